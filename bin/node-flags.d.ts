/** The V8/Node flags starsock's processes run with (see node-flags.js for each one's reason). */
export declare const NODE_FLAGS: readonly string[]
/** The young generation's growth while the program loads its modules (none). */
export declare const YOUNG_LOADING_FLAG: string
/** The young generation's growth once they are loaded (V8's own). */
export declare const YOUNG_LOADED_FLAG: string
/** The optimising compiler while the program loads its modules (off). */
export declare const OPTIMIZER_LOADING_FLAG: string
/** The optimising compiler once they are loaded (on, V8's own). */
export declare const OPTIMIZER_LOADED_FLAG: string
/** Node flags that, given, leave the optimiser as they say. */
export declare const OPTIMIZER_FLAG_NAMES: readonly string[]
