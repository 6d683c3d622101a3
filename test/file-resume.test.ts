/**
 * Resumable files at the protocol and agent level: the offer's `sha256`, the grant's `offset`
 * (`FileReceiverOptions.resumeOffset`, only for a verified sender that named the sha256), the
 * header's `offset`, and the quota charging the bytes still to come. Real server, real agents.
 */
import { describe, expect, it } from 'vitest'
import type { OfferRequest } from '../client/sock/agent.ts'
import { checkFileHeader, parseFileHeader } from '../shared/file-transfer.ts'
import { parseOffer, parseReply } from '../shared/sock-protocol.ts'
import { rejection, useAgents } from './helpers/agents.ts'
import { waitFor } from './helpers/server.ts'

const SHA = 'ab'.repeat(32)

describe('file offer, reply and header fields for resuming', () => {
  it.each([
    [{ kind: 'file', name: 'a', size: 10, sha256: SHA }, SHA],
    [{ kind: 'file', name: 'a', size: 10 }, undefined]
  ])('an offer %j carries sha256 %s', (value, sha) => {
    expect(parseOffer(value).sha256).toBe(sha)
  })

  it.each([['AB'.repeat(32)], ['ab'.repeat(31)], [42], ['g'.repeat(64)]])('an offer with sha256 %j is refused', (sha) => {
    expect(() => parseOffer({ kind: 'file', name: 'a', size: 10, sha256: sha })).toThrow(/sha256 must be 64 lower-case hex digits/)
  })

  it.each([[-1], [1.5], ['10'], [2 ** 53]])('a reply offset %j is refused', (offset) => {
    expect(() => parseReply({ offset })).toThrow(/offset must be a non-negative integer/)
  })

  it('a reply offset is kept; none is none', () => {
    expect(parseReply({ offset: 5 }).offset).toBe(5)
    expect(parseReply({}).offset).toBeUndefined()
  })

  it.each([
    [{ size: 10, offset: 11 }, /offset 11 refused/],
    [{ size: 10, offset: -1 }, /offset -1 refused/],
    [{ size: 10, offset: 0.5 }, /offset 0.5 refused/],
    [{ size: 10, offset: '3' }, /offset 3 refused/]
  ])('a header %j is refused', (header, message) => {
    expect(() => parseFileHeader({ name: 'a', sha256: SHA, ...header }, 100)).toThrow(message)
  })

  it('a header without an offset (an older sender) starts at 0; checkFileHeader names each difference', () => {
    const header = parseFileHeader({ name: 'a', size: 10, sha256: SHA }, 100)
    expect(header.offset).toBe(0)
    expect(() => checkFileHeader(header, { size: 10, sha256: SHA, offset: 0 })).not.toThrow()
    expect(() => checkFileHeader(header, { size: 11, offset: 0 })).toThrow('the file header announces 10 bytes, the offer 11')
    expect(() => checkFileHeader(header, { size: 10, sha256: 'cd'.repeat(32), offset: 0 })).toThrow('another sha256')
    expect(() => checkFileHeader(header, { size: 10, offset: 4 })).toThrow('the file header starts at byte 0, the grant at 4')
  })
})

describe('resumeOffset between two agents', () => {
  const { agent } = useAgents()

  it('a verified sender that names the sha256 is granted the offset; without sha256, or with an answer out of range, it starts at 0', async () => {
    const asked: OfferRequest[] = []
    let answer: number = 600
    const receiver = await agent({ allow: ['file:*'], files: { onFile: () => {}, resumeOffset: (request) => { asked.push(request); return answer } } })
    const sender = await agent()
    const first = await sender.offerFileAt(receiver.peer.peerId, { name: 'a.bin', size: 1000, sha256: SHA })
    expect(first.offset).toBe(600)
    expect(asked.map((r) => [r.secure, r.offer.sha256])).toEqual([[true, SHA]])
    await waitFor('the receiver\'s mapping with its offset', () => receiver.mappings().some((m) => m.fileOffset === 600), 5000)
    first.channel.abort(new Error('done'))

    const plain = await sender.offerFileAt(receiver.peer.peerId, { name: 'b.bin', size: 1000 })
    expect(plain.offset).toBe(0)
    expect(asked).toHaveLength(1) // not asked: an offer without sha256 cannot be resumed
    plain.channel.abort(new Error('done'))

    // offerFile cannot tell its caller an offset: it offers no sha256, so it is never granted one.
    const whole = await sender.offerFile(receiver.peer.peerId, { name: 'e.bin', size: 1000, sha256: SHA })
    expect(asked).toHaveLength(1)
    await waitFor('the receiver\'s mapping of e.bin from 0', () => receiver.mappings().some((m) => m.offer.name === 'e.bin' && m.fileOffset === 0), 5000)
    whole.abort(new Error('done'))

    answer = 1001
    expect((await sender.offerFileAt(receiver.peer.peerId, { name: 'c.bin', size: 1000, sha256: SHA })).offset).toBe(0)
    answer = 2.5
    expect((await sender.offerFileAt(receiver.peer.peerId, { name: 'd.bin', size: 1000, sha256: SHA })).offset).toBe(0)
  })

  it('the quota charges the bytes still to come: after a resumed file, one more fits that would not after the whole', async () => {
    // The offer is checked against the quota by its whole size (the offset is known once granted); the charge is what is to come.
    const receiver = await agent({ allow: ['file:*'], files: { onFile: () => {}, quotaBytesPerPeer: 1_100_000, resumeOffset: () => 900_000 } })
    const sender = await agent()
    const resumed = await sender.offerFileAt(receiver.peer.peerId, { name: 'big.bin', size: 1_000_000, sha256: SHA })
    expect(resumed.offset).toBe(900_000)
    // 100 000 bytes charged: 900 000 more fit (1 000 000 + 900 000 would be over 1 100 000).
    const more = await sender.offerFileAt(receiver.peer.peerId, { name: 'more.bin', size: 900_000 })
    expect(more.offset).toBe(0)
    const over = await rejection(sender.offerFileAt(receiver.peer.peerId, { name: 'over.bin', size: 200_000 }))
    expect(over.code).toBe('E_LIMIT_FILE_QUOTA')
  })

  it('offerFileAt checks its sha256', async () => {
    const sender = await agent()
    await expect(sender.offerFileAt('12D3KooWx', { name: 'a', size: 1, sha256: 'XYZ' })).rejects.toThrow('offerFile sha256 must be 64 lower-case hex digits')
  })
})
