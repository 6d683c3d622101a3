/**
 * The starsock server as a library (`import { createServer } from 'starsock/server'`): the
 * rendezvous and relay, its options and figures.
 */
export { createServer, VERSION, type StarsockServer, type ServerStats, type RequestHandler } from './server.ts'
export { SERVER_OPTIONS, type ServerOptions, type ResolvedServerOptions, type TlsOptions, type OptionSpec } from './options.ts'
export type { Logger, LogFn } from '../shared/logger.ts'
