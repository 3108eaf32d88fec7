// A tiny structured logger: one JSON object per line on stdout
// ({"level","time","msg",...fields}). Levels below the threshold are dropped.

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  level: LogLevel;
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

function toJson(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { message: value.message, ...(code !== undefined ? { code } : {}) };
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}

export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const logger: Logger = {
    level,
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
  };
  function emit(at: LogLevel, msg: string, fields: LogFields = {}) {
    if (LOG_LEVELS.indexOf(at) < LOG_LEVELS.indexOf(logger.level)) return;
    const record: LogFields = { level: at, time: new Date().toISOString(), msg };
    for (const [key, value] of Object.entries(fields)) record[key] = toJson(value);
    write(`${JSON.stringify(record)}\n`);
  }
  return logger;
}
