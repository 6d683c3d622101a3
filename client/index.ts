/** The starsock peer library for Node and the browser. */
export { createPeer, StarsockPeer, type PeerOptions, type PeerState, type PeerInfo, type PeerEvents, type CallOptions } from './peer.ts'
export { Connection, type ConnectionStats, type ByteReader, type ByteWriter } from './connection.ts'
export type { DialOptions } from './dials.ts'
export { createIdentity, identityFromBytes, identityToBytes, KEY_TYPES, type Identity, type KeyType } from './identity.ts'
export { parseServerAddress, type ServerAddress } from './server-address.ts'
export { StarsockError, ERROR_CODES, errorCodeOf, type ErrorCode } from '../shared/errors.ts'
export { checkName, MAX_NAME_CHARS, PEER_KINDS, type PeerKind, type PeerProfile } from '../shared/profile.ts'
export {
  createSockAgent, SockAgent, ruleForOffer, type SockAgentOptions, type SockHost, type OfferRequest, type OfferDecision, type OfferAnswer, type MappingRequest, type ServiceRequest, type ServiceTarget, type SourceFilter
} from './sock/agent.ts'
export { Mapping, type MappingStats } from './sock/mapping.ts'
export { Muxer, type MuxOptions, type OfferGrant } from './mux/muxer.ts'
export { Channel, type ChannelStats, type Datagram } from './mux/channel.ts'
export { parseRule, matchRule, type SockRule } from '../shared/sock-rules.ts'
export { allowFromEntryProblem, checkAllowFromList, FEATURES, SERVICE_NAME, type Feature, type Offer, type OfferKind, type OpenHeader, type Reply, type SockKind, type SockProto } from '../shared/sock-protocol.ts'
export type { SockAddress } from '../shared/mux-frame.ts'
