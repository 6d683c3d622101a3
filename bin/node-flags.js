// The V8/Node flags starsock's processes run with, in one place: the `starsock` program applies
// them at start-up (`v8.setFlagsFromString`, before anything else runs), and the benchmark starts
// its reference relays with the same flags so that a flag never flatters a ratio.
//
// `--heap-growing-percent=300`: after each full (mark-compact) collection the old generation may
// grow to 4 times what survived it (V8's largest factor; left to itself V8 picks about 1.5 for
// starsock's small heaps) before the next. Why: V8 counts the Buffers allocated since the last full
// collection (external memory: every socket read, every WebSocket message) against the old
// generation's limit, and starts a full collection once what is left under the limit is less than
// the young generation (16 MiB). With a live heap of 15 MiB and the limit near 38 MiB, a relaying
// process ran a mark-compact every 7 MiB or so, although those Buffers were young garbage a
// scavenge would have freed. A sealed byte is a Buffer several times over (the mux batch, the
// cipher's output, the sealed chunk; on the other side the opened messages and the chunk they are
// joined into), so end-to-end encryption crosses the limit sooner still. It is one of the few heap
// flags V8 reads after start-up (`--initial-old-space-size` and `--max-semi-space-size` do the
// same job but only on node's command line, which `node bin/starsock.js` does not give us without
// a second process).
//
// Measured on 2026-12-03 (steal 0.0%): one `forward` (`bench/tunnel-gc.ts --rounds 3`, every
// program at the factor through `--node-flags`; CPU s, mark-compacts and GC ms per 64 MiB,
// serve/forward/listen) and an idle server (`bench/idle-memory.ts --factors=200,300
// --steps=1000,3000 --rounds=2`, RSS slope per idle legacy peer after 10 s idle):
//   factor      encrypted forward                          plaintext (`--insecure`)             RSS per idle peer (heap; live)
//   3 (200)     128 MiB/s; 0.18/0.33/0.32 s; 4/7/7 MCs     186 MiB/s; 0.18/0.21/0.17 s; 4/4/4   24.1, 25.1 KiB (23.8; 12.8)
//   4 (300)     230 MiB/s; 0.10/0.17/0.18 s; 0/0/0 MCs     307 MiB/s; 0.09/0.12/0.09 s; 0/0/0   24.1, 23.3 KiB (22.6; 12.8)
// Earlier (2026-12-02, load average 9 to 15 on 2 cores, plaintext only) 3 times looked as good
// for throughput (0.12/0.16 s against 0.12/0.11) and 4 times seemed to cost 2 KiB more per idle
// peer (16.9, 22.0 KiB against 24.0, 23.2; V8's own factor 15.9, 18.6 but 7/0/6 mark-compacts):
// neither held on a quiet machine. The price is a heap up to 4 times its live size under load.
export const NODE_FLAGS = ['--heap-growing-percent=300']

// `--semi-space-growth-factor`: the young generation (semi-spaces) starts at 1 MiB and doubles
// whenever more than its size survived scavenges since it last grew. Loading the program's modules
// (the server: about 150 of them) is all survivors, so on V8's own factor (2) a freshly started
// server sat idle with 8 MiB semi-spaces, most of them resident, that nothing needed. The program
// keeps the factor at 1 (no growth) while its command's modules load (`YOUNG_LOADING_FLAG`) and
// gives V8's own back once they are loaded (`YOUNG_LOADED_FLAG`): under load the young generation
// grows as before, after the first few MiB that survive (it only grows while objects survive).
// Measured on 2026-12-02 (load average 12 to 15 on 2 cores): idle `starsock serve` RSS after 4 s
// 74 to 78 MiB without, 68 to 72 with. The tunnel path (`bench/tunnel-gc.ts --rounds 3`, three
// runs each, alternating), CPU s per 64 MiB serve/forward/listen: with 0.20-0.22/0.28-0.37/
// 0.30-0.37, without 0.20-0.26/0.33-0.40/0.34-0.41; mark-compacts 4-5/6-7/7 against 3-4/7/7;
// 2 to 7 scavenges per 64 MiB either way (the tunnel's bytes are Buffers, outside the young
// generation). Per idle peer: not measured (the old generation holds them).
export const YOUNG_LOADING_FLAG = '--semi-space-growth-factor=1'
export const YOUNG_LOADED_FLAG = '--semi-space-growth-factor=2'

// `--no-turbofan` while the command's modules load and it starts (`serve`: until it listens),
// `--turbofan` (V8's own) after: no optimising compile during start-up, which runs once and gains
// nothing from one. (Turned back on as soon as the modules were loaded, the server's own start-up
// still made one of node's path helpers hot on a fresh clone: a compile before the URL line.) Loading the
// server (node's module resolution and path helpers, its CommonJS export scanner) made a dozen
// functions hot enough for TurboFan; those compiles touched about 3.5 MiB of TurboFan's own
// machine code in the node binary (mapped pages: RSS counts them from then on), and the 4 MiB
// between the two modes below went with them (it seems the malloc arena of the background thread
// that compiled). V8 reads the flag at every tiering decision, so turning it back on works
// (`--max-opt=1` would not: it implies `--no-turbofan`, which `--max-opt=999` leaves off;
// test/node-flags.test.ts checks the pair). Functions that got hot while loading are optimised on
// their next calls.
// Measured on 2026-12-02 (idle `starsock serve` RSS 5 s after its URL line, 3 or 4 servers each,
// load average under 1 on 2 cores; plain `node -e 'setInterval(()=>{},1e3)'` 39.4 MiB):
//   without 61.1 to 65.8 MiB (the two modes); with 55.0 to 55.4; off for good 55.2 to 55.4 (nothing
//   after `loaded` undoes it); back on 1 ms after start, during the loading, 62.2 to 66.2.
//   `node --trace-opt`: 13 TurboFan compiles before the URL line without, none with.
// Throughput (`bench/tunnel-gc.ts --rounds 3`, two runs each, alternating), CPU s per 64 MiB
// serve/forward/listen: without 0.25, 0.29 / 0.42, 0.48 / 0.42, 0.49; with 0.26, 0.26 / 0.46,
// 0.45 / 0.50, 0.45: noise (every command runs with it; the tunnel's hot paths optimise as before).
export const OPTIMIZER_LOADING_FLAG = '--no-turbofan'
export const OPTIMIZER_LOADED_FLAG = '--turbofan'
/** Flags that, given to node, leave the optimiser as they say (`--opt` is V8's alias of `--turbofan`). */
export const OPTIMIZER_FLAG_NAMES = ['--turbofan', '--opt', '--max-opt', '--jitless']

// Flags measured for an idle server's memory and not kept (2026-12-02, idle `starsock serve` RSS 5 s
// after its URL line, 3 readings each of 3 to 4 servers per variant taking turns, load average 1 to 4
// on 2 cores; the program with the key and multiaddr libraries loaded on demand, median 61.7 to
// 65 MiB, two modes: 61.5 or 65.5):
//   --max-lazy, --no-flush-bytecode, --lazy-feedback-allocation, --single-threaded-gc,
//   --no-concurrent-marking, --no-parallel-scavenge: no change beyond the noise (medians 61.9 to 65.6).
//   --no-concurrent-recompilation: 2.5 MiB less (median 59.4) on node's command line only: V8 reads
//     it when the isolate starts, so `setFlagsFromString` has no effect (measured: 65.5 as without);
//     it also moves every optimising compile onto the event loop.
//   --single-threaded (command line only): about 2 MiB less, no background threads at all.
//   MALLOC_ARENA_MAX=1 (environment, before node starts): about 2.5 MiB less. The 4 MiB between the
//   two modes is a malloc arena of one of V8's worker threads, which keeps what a background compile
//   or sweep freed; which mode a start lands in is chance.
//   --no-concurrent-sweeping (settable here): 62.2 against 65.4 in one run, not confirmed and its
//     cost under load not measured.
// With `OPTIMIZER_LOADING_FLAG` (55.0 to 55.4 MiB), measured and not kept (2026-12-02, load 1 to 8):
//   A full collection once the server listens (`gc()` from `node:vm` after `--expose-gc`, and
//     `gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })`, V8's compacting one):
//     0.1 to 0.3 MiB more, not less; old space stays at 10.5 MiB (8.5 live), the pages are not freed.
//   `--no-sparkplug` while loading too (`--sparkplug` once loaded): 54.6 to 55.0 against 55.1 to
//     55.2 (off for good 54.0 to 54.3): 0.4 MiB, the start-up's baseline code; not worth a flag.
//   What is left above plain node (39.4 MiB), idle at 55.2: V8's heap 13.2 MiB resident (3.8 in
//     plain node; old space 10.2, 9.4 live: 2.6 MiB of strings, the modules' sources among them;
//     1.5 of arrays; 0.9 of shapes; 0.6 of closures; prom-client's event loop histogram 0.35
//     native), 4.3 MiB more of the node binary mapped (3.6 of it read-only data: the sources and
//     code cache of the 120 node builtins more than plain node loads: http, tls, crypto, zlib,
//     dgram, child_process (commander), cluster (prom-client), worker_threads (pino)...), and
//     malloc's heap and small mappings 1.6 MiB more.
