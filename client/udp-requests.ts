/** The requests to the server's UDP relay: allocate, refresh and release a pair of ports, replies checked. */
import { errorFromWire, StarsockError } from '../shared/errors.ts'
import { EVENTS, type UdpAllocation } from '../shared/events.ts'
import { checkUdpAllocation } from '../shared/validate.ts'
import type { Requester } from './server-link.ts'

/** What a UDP allocation request asks for. */
export interface UdpAllocateRequest {
  mode?: 'token' | 'address' | 'open'
  addresses?: string[]
}

/** Options of a request: a signal and a timeout. */
type RequestOptions = { signal?: AbortSignal, timeoutMs?: number }

/** The UDP relay requests of one peer. */
export class UdpRequests {
  constructor (
    private readonly link: Requester,
    /** Throws unless the peer is joined. */
    private readonly mustBeJoined: () => void
  ) {}

  /** Settles with a new allocation. */
  async allocate (request: UdpAllocateRequest, options: RequestOptions): Promise<UdpAllocation> {
    return await this.allocation(EVENTS.UDP_ALLOCATE, [request], options)
  }

  /** Settles with the allocation's new info. */
  async refresh (id: string, options: RequestOptions): Promise<UdpAllocation> {
    return await this.allocation(EVENTS.UDP_REFRESH, [id], options)
  }

  /** Settles once released. */
  async release (id: string, options: RequestOptions): Promise<void> {
    await this.request(EVENTS.UDP_RELEASE, [id], options)
  }

  private async allocation (event: string, args: unknown[], options: RequestOptions): Promise<UdpAllocation> {
    const allocation = checkUdpAllocation(event, await this.request(event, args, options))
    if (allocation instanceof StarsockError) throw allocation
    return allocation
  }

  private async request (event: string, args: unknown[], options: RequestOptions): Promise<unknown> {
    this.mustBeJoined()
    const reply = await this.link.request(event, args, options)
    if (reply[0] !== null && reply[0] !== undefined) throw errorFromWire(reply[0])
    return reply[1]
  }
}
