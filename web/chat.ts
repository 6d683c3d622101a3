/** Chat with the picked peer: one `chat` channel per peer, a JSON line per message. */
import type { Channel } from '../client/mux/channel.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { byId, el } from './dom.ts'
import type { AgentPart, PageContext } from './context.ts'
import { badge, describeError, type Security } from './security.ts'

export function setupChat (ctx: PageContext): AgentPart {
  const chats = new Map<string, Promise<Channel>>()
  /** Whether each chat channel's own connection is end-to-end encrypted (its badge; not the peer's summary). */
  const chatSecure = new WeakMap<Channel, boolean>()

  /** A chat line, with the badge of the connection it went on. */
  const say = (text: string, from: string, security?: Security): void => {
    const item = el('li', { class: from === 'me' ? 'mine' : 'theirs' })
    item.append(el('span', { class: 'from' }, from === 'me' ? 'you' : from))
    if (security !== undefined) item.append(badge(security))
    item.append(el('span', { class: 'text' }, text))
    byId('messages').append(item)
    item.scrollIntoView({ block: 'nearest' })
  }

  const chatChannel = async (peerId: string): Promise<Channel> => {
    let channel = chats.get(peerId)
    if (channel === undefined) {
      const agent = ctx.needAgent()
      channel = (async () => {
        const mux = await agent.session(peerId)
        const c = await mux.open({ type: 'chat', reliable: true })
        chatSecure.set(c, mux.secure)
        return c
      })()
      chats.set(peerId, channel)
      channel.then((c) => { void c.whenClosed.then(() => chats.delete(peerId)) }, () => chats.delete(peerId))
    }
    return await channel
  }

  const readChat = async (channel: Channel, secure: boolean): Promise<void> => {
    const reader = new LineReader(channel)
    try {
      for (;;) {
        const line = await reader.next() as { text?: unknown } | null
        if (line === null) return
        if (typeof line.text === 'string') say(line.text.slice(0, 4000), channel.remotePeer, { secure })
      }
    } catch {
      channel.abort()
    }
  }

  byId<HTMLFormElement>('chat-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const input = byId<HTMLInputElement>('chat-text')
    const text = input.value
    void (async () => {
      let peerId: string | undefined
      try {
        peerId = ctx.needPeer()
        const channel = await chatChannel(peerId)
        await writeLine(channel, { text })
        say(text, 'me', { secure: chatSecure.get(channel) === true })
        input.value = ''
      } catch (err) {
        if (peerId !== undefined) ctx.book.failed(peerId, err)
        say(`not sent: ${describeError(err)}`, 'me')
      }
    })()
  })

  ctx.on('session:close', () => chats.clear())

  return { channels: { chat: (channel, mux) => { void readChat(channel, mux.secure) } } }
}
