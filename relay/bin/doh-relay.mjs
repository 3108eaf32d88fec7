#!/usr/bin/env node
// The relay CLI lands with the relay issue; until then it says so.
console.error("doh-relay: not built yet");
process.exit(1);
