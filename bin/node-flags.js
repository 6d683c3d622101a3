// The V8/Node flags starsock's processes run with, in one place: the `starsock` program applies
// them at start-up, and the benchmark starts its reference relays with the same flags so that a
// flag never flatters a ratio. Empty means node's defaults.
export const NODE_FLAGS = []
