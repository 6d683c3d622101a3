/**
 * Chat: one `chat` channel per peer (a JSON line per message), one thread per peer
 * (`threads.ts`): the picked peer's thread is on show, others count unread in the peer list, and a
 * message that comes while the page is in the background shows a notification (with permission,
 * asked by a button, never on load).
 */
import type { Channel } from '../client/mux/channel.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { byId, el, inert } from './dom.ts'
import type { AgentPart, PageContext } from './context.ts'
import { badge, describeError } from './security.ts'
import { MAX_MESSAGE_CHARS, type ChatThreads, type ThreadLine } from './threads.ts'

/** Characters of a message a notification shows at most. */
export const NOTIFICATION_TEXT_CHARS = 100
/** Notifications shown at most per `NOTIFICATION_WINDOW_MS`, whoever writes. */
export const MAX_NOTIFICATIONS = 3
/** The window of `MAX_NOTIFICATIONS`. */
export const NOTIFICATION_WINDOW_MS = 30_000

export function setupChat (ctx: PageContext, threads: ChatThreads): AgentPart {
  const chats = new Map<string, Promise<Channel>>()
  /** Whether each chat channel's own connection is end-to-end encrypted (its badge; not the peer's summary). */
  const chatSecure = new WeakMap<Channel, boolean>()
  const messages = byId<HTMLOListElement>('messages')
  /**
   * The thread on show: the picked peer's; with none picked, that of the last peer who wrote (read,
   * not answered: sending still needs a pick), or the page's own notes (`''`).
   */
  let unpickedThread = ''

  /** A chat line as the page shows it: who, the badge of its connection, the text (never as HTML). */
  const lineItem = (peerId: string, line: ThreadLine): HTMLLIElement => {
    const item = el('li', { class: line.from === 'them' ? 'theirs' : line.from === 'me' ? 'mine' : 'note' })
    if (line.from === 'note') item.dataset.state = 'failed'
    item.append(el('span', { class: 'from' }, line.from === 'them' ? ctx.nameOf(peerId) : 'you'))
    if (line.security !== undefined) item.append(badge(line.security))
    item.append(el('span', { class: 'text' }, line.text))
    return item
  }

  /**
   * Scroll the thread (its own scroll box) to its last line. Never `scrollIntoView`: that scrolls
   * the page too, and a line another peer sends must not move the page (and a prompt's Allow with it).
   */
  const toEnd = (): void => { messages.scrollTop = messages.scrollHeight }

  /** A rebuild of the thread on show, asked for by messages that switch it, made once a frame. */
  let drawFrame = 0
  /** Make the list of the thread on show anew (the whole of it). */
  const draw = (): void => {
    if (drawFrame !== 0) cancelAnimationFrame(drawFrame)
    drawFrame = 0
    const peerId = threads.shown
    messages.replaceChildren(...threads.lines(peerId).map((line) => lineItem(peerId, line)))
    toEnd()
  }

  /**
   * Show the thread of `peerId`: at once, or (`soon`: a message switched it, with no peer picked)
   * at the next frame, so messages of two peers taking turns rebuild the list once a frame, not
   * once each (up to 500 lines each time).
   */
  const showThread = (peerId: string, soon = false): void => {
    threads.show(peerId)
    if (!soon) draw()
    else if (drawFrame === 0) drawFrame = requestAnimationFrame(draw)
    byId('chat-with').textContent = peerId === '' ? 'Pick a peer to chat with.' : `With ${ctx.nameOf(peerId)}${ctx.picked === peerId ? '' : ' (pick it to answer)'}`
  }

  const refresh = (): void => { showThread(ctx.picked ?? unpickedThread) }

  threads.on('line', ({ peerId, line, dropped }) => {
    if (peerId !== threads.shown || drawFrame !== 0) return // a rebuild to come has it
    for (let i = 0; i < dropped; i++) messages.firstElementChild?.remove()
    const item = lineItem(peerId, line)
    messages.append(item)
    toEnd()
  })

  /** Whether to say it in a notification: the page is in the background and the person allowed them. */
  const notifications: number[] = []
  const notify = (peerId: string, text: string): void => {
    if (document.visibilityState !== 'hidden' || !('Notification' in window) || Notification.permission !== 'granted') return
    const now = Date.now()
    while (notifications.length > 0 && (notifications[0] ?? 0) <= now - NOTIFICATION_WINDOW_MS) notifications.shift()
    if (notifications.length >= MAX_NOTIFICATIONS) return
    notifications.push(now)
    const body = text.length > NOTIFICATION_TEXT_CHARS ? `${text.slice(0, NOTIFICATION_TEXT_CHARS)}…` : text
    try {
      // One per peer at a time (`tag`): a new message replaces its last notification.
      const shown = new Notification(`Message from ${ctx.nameOf(peerId)}`, { body, tag: `starsock-chat-${peerId}` })
      const session = ctx.peer
      shown.onclick = () => {
        window.focus()
        // Only in the session it came in: a new identity has another list.
        if (ctx.peer === session) ctx.pick(peerId)
        shown.close()
      }
    } catch {
      // Some browsers take notifications only from a service worker: the unread count still says it.
    }
  }

  /** A message of `peerId`: into its thread; with no peer picked, its thread goes on show. */
  const received = (peerId: string, words: string, secure: boolean): void => {
    const text = inert(words) // shown as it came, but never reordering the page around it
    if (ctx.picked === undefined && threads.shown !== peerId) {
      unpickedThread = peerId
      showThread(peerId, true)
    }
    threads.add(peerId, { from: 'them', text, security: { secure } })
    notify(peerId, text)
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
      // Forgotten when it ends, unless a newer one (a new session) took its place meanwhile.
      const made = channel
      const forget = (): void => { if (chats.get(peerId) === made) chats.delete(peerId) }
      channel.then((c) => { void c.whenClosed.then(forget) }, forget)
    }
    return await channel
  }

  const readChat = async (channel: Channel, secure: boolean): Promise<void> => {
    const reader = new LineReader(channel)
    try {
      for (;;) {
        const line = await reader.next() as { text?: unknown } | null
        if (line === null) return
        if (typeof line.text === 'string') received(channel.remotePeer, line.text, secure)
      }
    } catch {
      channel.abort()
    }
  }

  byId<HTMLFormElement>('chat-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const input = byId<HTMLInputElement>('chat-text')
    const text = input.value
    if (text.length > MAX_MESSAGE_CHARS) {
      // Kept in the field: the other page would cut it (and a line past 64 KiB ends the channel).
      threads.add(threads.shown, { from: 'note', text: `not sent: ${text.length} characters, at most ${MAX_MESSAGE_CHARS} a message` })
      return
    }
    // Emptied now, not once sent: what the person types meanwhile is the next message, never lost.
    input.value = ''
    const session = ctx.peer
    void (async () => {
      let peerId: string | undefined
      try {
        peerId = ctx.needPeer()
        const channel = await chatChannel(peerId)
        await writeLine(channel, { text })
        // A new identity meanwhile starts with no threads: the line belongs to the one before.
        if (ctx.peer === session) threads.add(peerId, { from: 'me', text, security: { secure: chatSecure.get(channel) === true } })
      } catch (err) {
        // Not sent: the text comes back to the field, or, when the person typed something else
        // since, into the note, so it is never lost.
        const back = input.value === ''
        if (back) input.value = text
        if (ctx.peer !== session) return
        if (peerId !== undefined) ctx.book.failed(peerId, err)
        threads.add(peerId ?? threads.shown, { from: 'note', text: `not sent: ${describeError(err)}${back ? '' : ` (the message: ${text})`}` })
      }
    })()
  })

  setupNotifyButton()

  ctx.on('picked', refresh)
  ctx.on('session', refresh)
  ctx.on('session:close', () => {
    chats.clear()
    threads.clear()
    unpickedThread = ''
    refresh()
  })
  refresh()

  return { channels: { chat: (channel, mux) => { void readChat(channel, mux.secure) } } }
}

/** The button that asks for permission to notify (a person's click: browsers refuse the ask otherwise). */
function setupNotifyButton (): void {
  const button = byId<HTMLButtonElement>('notify')
  const status = byId('notify-status')
  const show = (): void => {
    if (!('Notification' in window)) {
      button.disabled = true
      status.textContent = 'This browser shows no notifications.'
      return
    }
    const permission = Notification.permission
    button.disabled = permission !== 'default'
    status.textContent = permission === 'granted' ? 'Messages that come while this page is in the background show a notification.'
      : permission === 'denied' ? 'Notifications are blocked for this page (the browser\'s site settings can allow them).' : ''
  }
  button.addEventListener('click', () => {
    void Notification.requestPermission().then(show, show)
  })
  show()
}
