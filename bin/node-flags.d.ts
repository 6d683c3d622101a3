/** The V8/Node flags starsock's processes run with (see node-flags.js for each one's reason). */
export declare const NODE_FLAGS: readonly string[]
