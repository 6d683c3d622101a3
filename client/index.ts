/** The starsock peer library for Node and the browser. */
export { createPeer, StarsockPeer, type PeerOptions, type PeerState, type PeerInfo, type PeerEvents, type CallOptions } from './peer.ts'
export { Connection, type ConnectionStats } from './connection.ts'
export { createIdentity, identityFromBytes, identityToBytes, KEY_TYPES, type Identity, type KeyType } from './identity.ts'
export { parseServerAddress, type ServerAddress } from './server-address.ts'
export { StarsockError, ERROR_CODES, errorCodeOf, type ErrorCode } from '../shared/errors.ts'
