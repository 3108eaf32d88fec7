// doh-relay: the relay daemon's command line.
//   --config FILE   YAML config (default: udp+tcp on 127.0.0.1:5053 to public DoH resolvers)
//   --check         validate, print the config as YAML with every default filled in
//                   (readable by --config), exit 0; 1 with every problem when invalid
//   --log-level L   debug | info | warn | error (overrides log.level)
//   --help, --version
// SIGTERM/SIGINT drain in-flight queries (up to 5 s) and exit 0; SIGHUP
// reloads the config file, keeping the old config when the new one is bad.
// With workers: N (N > 1) this process supervises N forked copies of itself
// (supervisor.ts); each copy runs main() again and serves as one worker.

import cluster from "node:cluster";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import {
  ConfigError,
  formatProblem,
  parseRelayConfig,
  type RelayConfig,
} from "../../shared/config/schema.ts";
import { loadRelayConfig } from "./config/load-config.ts";
import { printRelayConfig } from "./config/print-config.ts";
import { reusePortSupported } from "./listeners/bind.ts";
import { createLogger, isLogLevel, type Logger, type LogLevel, withFields } from "./log.ts";
import { type Relay, startRelay } from "./relay.ts";
import { reportToSupervisor, runSupervisor, WORKER_ENV } from "./supervisor.ts";
import { loadQuiche } from "./transports/quiche-link.ts";

const HELP = `Usage: doh-relay [--config FILE] [--check] [--log-level LEVEL]

  --config FILE      relay config (YAML); without it: udp and tcp on
                     127.0.0.1:5053, forwarding to public DoH resolvers
  --check            validate the config and print it as YAML with every
                     default filled in (readable by --config), or every
                     problem, one per line; then exit
  --log-level LEVEL  debug, info, warn or error (overrides log.level)
  --help             this text
  --version          the version

Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the config.
`;

export const DEFAULT_CONFIG_INPUT = {
  upstreams: [
    { name: "cloudflare", url: "https://cloudflare-dns.com/dns-query" },
    { name: "quad9", url: "https://dns.quad9.net/dns-query" },
  ],
  routes: [{ zones: ["."], upstreams: ["cloudflare", "quad9"], policy: "failover" }],
};

const SHUTDOWN_DEADLINE_MS = 5000;

/** Set by scripts/build-relay.ts in the bundle; absent when run from source. */
declare const RELAY_BUILD_VERSION: string | undefined;

function version(): string {
  if (typeof RELAY_BUILD_VERSION === "string") return RELAY_BUILD_VERSION;
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
  return String(pkg.version);
}

async function readConfig(path: string | undefined): Promise<RelayConfig> {
  const config =
    path === undefined
      ? parseRelayConfig(DEFAULT_CONFIG_INPUT).config
      : (await loadRelayConfig(path)).config;
  await assertQuicAvailable(config);
  await assertReusePortAvailable(config);
  return config;
}

/**
 * reuse_port asks for SO_REUSEPORT, which Node sets only from 22.12 / 23.1
 * (older ones ignore the option): without it a second process on the port
 * would not share the load, so say so instead of binding without it.
 */
async function assertReusePortAvailable(config: RelayConfig): Promise<void> {
  const asking = Object.entries(config.listen).filter(
    ([, l]) => l !== undefined && "reuse_port" in l && l.reuse_port,
  );
  if (asking.length === 0 || (await reusePortSupported())) return;
  throw new ConfigError(
    asking.map(([name]) => ({
      path: ["listen", name, "reuse_port"],
      message: `SO_REUSEPORT is not available with Node ${process.versions.node} here (it needs Node 22.12 or 23.1+, on Linux or a BSD); remove it: workers: N shares the listeners without it`,
    })),
  );
}

/**
 * A worker's config. Where Node can set SO_REUSEPORT every worker binds its
 * own sockets with it and the kernel spreads datagrams and connections over
 * them (by source address and port); elsewhere node:cluster shares the
 * primary's sockets. On 2 cores two workers sharing the UDP socket measured
 * 0.4–0.5× the queries/s of one (bench/workers.ts), with their own 0.9–1.0×.
 */
async function forWorker(config: RelayConfig): Promise<RelayConfig> {
  if (!cluster.isWorker || !(await reusePortSupported())) return config;
  const listen = Object.fromEntries(
    Object.entries(config.listen).map(([name, l]) => [
      name,
      l !== undefined && "reuse_port" in l ? { ...l, reuse_port: true } : l,
    ]),
  ) as RelayConfig["listen"];
  return { ...config, listen };
}

/** The number of relay processes: workers, with "auto" = the cores available. */
function workerCount(config: RelayConfig): number {
  return config.workers === "auto" ? availableParallelism() : config.workers;
}

/**
 * DoQ and DoH3 need @matrixai/quic, an optional native addon (no build exists
 * for linux-arm64; the release bundle leaves it out): a quic:// or h3://
 * upstream without it is a config error at startup, not a SERVFAIL per query.
 */
async function assertQuicAvailable(config: RelayConfig): Promise<void> {
  const index = config.upstreams.findIndex(
    (u) => u.url.protocol === "quic" || u.url.protocol === "h3",
  );
  const upstream = config.upstreams[index];
  if (!upstream) return;
  try {
    await loadQuiche();
  } catch (error) {
    const scheme = upstream.url.protocol;
    const instead = scheme === "quic" ? "tls://" : "https://";
    throw new ConfigError([
      {
        path: ["upstreams", index, "url"],
        message: `${scheme}:// needs the optional package @matrixai/quic 1.2.12, which does not load here (${oneLine(error)}); install it beside the relay (npm install @matrixai/quic@1.2.12) on linux-x64, macOS or Windows, or use ${instead} instead`,
      },
    ]);
  }
}

/** A config error as one line per problem; anything else as one line. */
function problemLines(error: unknown): string {
  if (error instanceof ConfigError) return error.problems.map(formatProblem).join("\n");
  return oneLine(error);
}

function oneLine(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  return error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
}

/** What the command line asks for, once --help, --version and bad arguments are dealt with. */
interface CommandLine {
  path: string | undefined;
  check: boolean;
  level: LogLevel | undefined;
}

/**
 * The command line read, or the exit code when it is already answered:
 * --help and --version print and give 0, a bad argument gives 2.
 */
function readCommandLine(argv: string[]): CommandLine | number {
  let args: ReturnType<typeof parseCommandLine>;
  try {
    args = parseCommandLine(argv);
  } catch (error) {
    process.stderr.write(`doh-relay: ${oneLine(error)}\n`);
    return 2;
  }
  if (args.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const level = args.values["log-level"];
  if (level !== undefined && !isLogLevel(level)) {
    process.stderr.write(`doh-relay: --log-level: use debug, info, warn or error\n`);
    return 2;
  }
  return { path: args.values.config, check: args.values.check === true, level };
}

function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: "string", short: "c" },
      check: { type: "boolean" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
    strict: true,
  });
}

export async function main(argv: string[]): Promise<number> {
  const commandLine = readCommandLine(argv);
  if (typeof commandLine === "number") return commandLine;
  const { path } = commandLine;

  let config: RelayConfig;
  try {
    config = await forWorker(await readConfig(path));
  } catch (error) {
    process.stderr.write(`${problemLines(error)}\n`);
    return 1;
  }
  if (commandLine.check) {
    process.stdout.write(printRelayConfig(config));
    return 0;
  }

  const baseLogger = createLogger(commandLine.level ?? config.log.level);
  const count = workerCount(config);
  if (cluster.isPrimary && count > 1) {
    return runSupervisor({
      config,
      count,
      logger: baseLogger,
      drainMs: SHUTDOWN_DEADLINE_MS,
      ownSockets: await reusePortSupported(),
    });
  }
  return runOneRelay(config, path, baseLogger);
}

/** This process as the relay (alone, or as one supervised worker) until a signal stops it. */
async function runOneRelay(
  config: RelayConfig,
  path: string | undefined,
  baseLogger: Logger,
): Promise<number> {
  const workerIndex = cluster.isWorker ? Number(process.env[WORKER_ENV]) : undefined;
  const logger: Logger =
    workerIndex === undefined ? baseLogger : withFields(baseLogger, { worker: workerIndex });
  if (path === undefined && cluster.isPrimary) {
    logger.info("no --config: using the default config", {
      listen: "udp+tcp 127.0.0.1:5053",
      upstreams: DEFAULT_CONFIG_INPUT.upstreams.map((u) => u.url),
    });
  }
  let relay: Relay;
  try {
    relay = await startRelay(config, logger, {
      serveOps: cluster.isPrimary,
      ...(workerIndex !== undefined ? { worker: workerIndex } : {}),
    });
  } catch (error) {
    logger.error("startup failed", { error });
    return 1;
  }
  logger.info("relay started", { version: version(), pid: process.pid });
  if (cluster.isWorker) reportToSupervisor(relay.ops);
  return serveUntilSignalled(relay, path, logger);
}

/**
 * Serves until SIGTERM or SIGINT, then drains and gives the exit code;
 * SIGHUP reloads the config file, keeping the running config when the new one is bad.
 */
function serveUntilSignalled(
  relay: Relay,
  path: string | undefined,
  logger: Logger,
): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info("shutting down", { signal, in_flight: relay.handler.inFlight });
      relay
        .shutdown(SHUTDOWN_DEADLINE_MS)
        .then(({ drained }) => {
          logger.info("stopped", { drained });
          resolve(0);
        })
        .catch((error) => {
          logger.error("shutdown failed", { error });
          resolve(1);
        });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGHUP", () => {
      if (stopping) return;
      readConfig(path)
        .then(forWorker)
        .then((next) => relay.reload(next))
        .catch((error) =>
          logger.error("reload rejected; keeping the running config", { error: oneLine(error) }),
        );
    });
  });
}

if (import.meta.main) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // Anything left (e.g. an upstream health-check timer) must not keep us alive.
    setTimeout(() => process.exit(code), 200).unref();
  });
}
