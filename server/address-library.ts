/**
 * The multiaddr library, loaded by the server only when an address outside the common
 * websocket-star shapes arrives (`shared/address-parse.ts` reads those itself).
 */
import { needsAddressLibrary, useAddressLibrary } from '../shared/address-parse.ts'

export { needsAddressLibrary }

let loading: Promise<void> | undefined

/** Load the multiaddr library once; every caller until then awaits the same load (a failed one is tried again next time). */
export async function loadAddressLibrary (): Promise<void> {
  loading ??= import('@multiformats/multiaddr').then((m) => useAddressLibrary(m.multiaddr)).catch((err: unknown) => { loading = undefined; throw err })
  await loading
}
