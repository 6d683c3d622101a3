/**
 * Websocket-star addresses with the multiaddr library loaded at once, for the client (which may
 * meet any address a peer announces) and the `starsock/protocol` entry: `parseAddress` answers
 * for every address. The server uses `address-parse.ts` directly and loads the library only for
 * an address outside the shapes that module reads itself.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { useAddressLibrary } from './address-parse.ts'

useAddressLibrary(multiaddr)

export { checkAddress, isWebsocketStarShape, parseAddress, type ParsedAddress } from './address-parse.ts'
