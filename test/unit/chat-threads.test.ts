import { describe, expect, it } from 'vitest'
import { ChatThreads, MAX_CHARS_PER_THREAD, MAX_LINES_PER_THREAD, MAX_MESSAGE_CHARS, MAX_THREADS } from '../../web/threads.ts'

describe('ChatThreads: one bounded thread per peer, with unread counts', () => {
  it('counts their lines unread while the thread is not on show, and clears the count on show', () => {
    const threads = new ChatThreads()
    const told: string[] = []
    threads.on('unread', (peerId) => told.push(peerId))
    threads.show('a')
    threads.add('a', { from: 'them', text: 'on show' })
    threads.add('b', { from: 'them', text: 'one' })
    threads.add('b', { from: 'me', text: 'mine is never unread' })
    threads.add('b', { from: 'note', text: 'nor a note' })
    threads.add('b', { from: 'them', text: 'two' })
    expect([threads.unread('a'), threads.unread('b')]).toEqual([0, 2])
    threads.show('b')
    expect(threads.unread('b')).toBe(0)
    expect(told).toEqual(['b', 'b', 'b'])
    expect(threads.lines('a').map((l) => l.text)).toEqual(['on show'])
    expect(threads.lines('b').map((l) => l.text)).toEqual(['one', 'mine is never unread', 'nor a note', 'two'])
  })

  it('keeps the last MAX_LINES_PER_THREAD lines, cuts long messages, and keeps a thread under MAX_CHARS_PER_THREAD', () => {
    const threads = new ChatThreads()
    let dropped = 0
    threads.on('line', (e) => { dropped += e.dropped })
    for (let i = 0; i < MAX_LINES_PER_THREAD + 20; i++) threads.add('a', { from: 'them', text: `m${i}` })
    expect(threads.lines('a')).toHaveLength(MAX_LINES_PER_THREAD)
    expect(threads.lines('a')[0]?.text).toBe('m20')
    expect(dropped).toBe(20)
    threads.add('b', { from: 'them', text: 'x'.repeat(1_000_000) })
    expect(threads.lines('b')[0]?.text).toHaveLength(MAX_MESSAGE_CHARS)
    for (let i = 0; i < 100; i++) threads.add('b', { from: 'them', text: 'y'.repeat(MAX_MESSAGE_CHARS) })
    expect(threads.lines('b').reduce((n, l) => n + l.text.length, 0)).toBeLessThanOrEqual(MAX_CHARS_PER_THREAD)
  })

  it('keeps at most MAX_THREADS threads: the one written to longest ago goes, never the one on show', () => {
    const threads = new ChatThreads()
    threads.show('shown')
    threads.add('shown', { from: 'them', text: 'keep me' })
    for (let i = 0; i < MAX_THREADS + 10; i++) threads.add(`p${i}`, { from: 'them', text: 'hi' })
    expect(threads.lines('shown').map((l) => l.text)).toEqual(['keep me'])
    expect(threads.lines('p0')).toEqual([])
    expect(threads.unread('p0')).toBe(0)
    expect(threads.lines(`p${MAX_THREADS + 9}`)).toHaveLength(1)
    const kept = Array.from({ length: MAX_THREADS + 10 }, (_, i) => threads.lines(`p${i}`).length).filter((n) => n > 0).length
    expect(kept + 1).toBe(MAX_THREADS)
  })
})
