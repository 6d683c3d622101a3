// The V8/Node flags starsock's processes run with, in one place: the `starsock` program applies
// them at start-up (`v8.setFlagsFromString`, before anything else runs), and the benchmark starts
// its reference relays with the same flags so that a flag never flatters a ratio.
//
// `--heap-growing-percent=300`: after each full (mark-compact) collection the old generation may
// grow to 4 times what survived it (V8's own largest factor; left to itself V8 picks about 1.5
// for starsock's small heaps) before the next. Why: V8 counts the Buffers allocated since the
// last full collection (external memory: every socket read, every WebSocket message) against the
// old generation's limit, and starts a full collection once what is left under the limit is less
// than the young generation (16 MiB). With a live heap of 15 MiB and the limit near 38 MiB, a
// relaying process ran a mark-compact every 7 MiB or so, although those Buffers were young
// garbage a scavenge would have freed. Measured on the tunnel path (`bench/tunnel-gc.ts`,
// 64 MiB rounds): 5 to 10 mark-compacts per 64 MiB in at least one of `serve`, `listen` and
// `forward` in every run before, none after. It is one of the few heap flags V8 reads after
// start-up (`--initial-old-space-size` and `--max-semi-space-size` do the same job but only on
// node's command line, which `node bin/starsock.js` does not give us without a second process).
export const NODE_FLAGS = ['--heap-growing-percent=300']
