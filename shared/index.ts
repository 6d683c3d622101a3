/**
 * The wire protocol's names and types (`import ... from 'starsock/protocol'`), for code that talks
 * to a starsock server or peer without the client: events, error codes, addresses, limits.
 */
export * from './constants.ts'
export * from './events.ts'
export { ERROR_CODES, LEGACY_ERROR_STRINGS, StarsockError, wireError, errorCodeOf, errorFromWire, type ErrorCode } from './errors.ts'
export { parseAddress, checkAddress, isWebsocketStarShape, type ParsedAddress } from './wsstar-address.ts'
export { FEATURES, SERVICE_NAME, formatAddress, type Feature, type Offer, type OfferKind, type OpenHeader, type Reply, type SockKind, type SockProto } from './sock-protocol.ts'
export { parseRule, matchRule, type SockRule } from './sock-rules.ts'
export type { SockAddress } from './mux-frame.ts'
