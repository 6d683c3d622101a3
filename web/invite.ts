/**
 * Invites: a link (and its QR code, for a phone) to this page ("join this server") or to this
 * page's peer ("dial me": the page's address with `#dial=<peer id>`), with the server's token
 * only when the person ticks it; and the other end of such a link: a page opened with
 * `#dial=PEERID` picks that peer once it is online. Everything in the fragment stays in the
 * browser (a fragment is never sent to the server).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { encode } from 'uqr'
import { byId } from './dom.ts'
import type { PageContext } from './context.ts'

/** Longest `#dial=` the page reads: peer ids are 46 to 53 characters (an RSA one a few hundred at most). */
const MAX_DIAL_CHARS = 1024
/** Pixels a QR module takes, at most and at least. */
const QR_MODULE_MAX_PX = 8
const QR_MODULE_MIN_PX = 3
/** The QR code's width the page aims for, in pixels. */
const QR_TARGET_PX = 264
/** White modules around the code: the QR standard asks for four. */
const QR_QUIET_MODULES = 4

/** What an invite link is to. */
export type InviteKind = 'page' | 'dial'

/** The page's own address, without query or fragment (the folder it is served from). */
export function pageAddress (href: string): string {
  const url = new URL('./', href)
  url.search = ''
  url.hash = ''
  return url.href
}

/**
 * The link to send: the page's address, with `#dial=` for "dial me" and `token=` when asked
 * (both in the fragment: `token.ts` takes `#token=` and removes it from the address bar).
 */
export function inviteLink (href: string, kind: InviteKind, peerId: string | undefined, token: string | undefined): string {
  const fragment: string[] = []
  if (kind === 'dial' && peerId !== undefined) fragment.push(`dial=${peerId}`)
  if (token !== undefined) fragment.push(`token=${encodeURIComponent(token)}`)
  return pageAddress(href) + (fragment.length === 0 ? '' : `#${fragment.join('&')}`)
}

/** What a `#dial=` in the address asked: nothing, a peer id, or something that is not one. */
export type DialRequest = { kind: 'none' } | { kind: 'peer', peerId: string } | { kind: 'invalid' }

/** Whether `text` is a libp2p peer id (its multihash decodes). */
export function isPeerId (text: string): boolean {
  if (text.length === 0 || text.length > MAX_DIAL_CHARS) return false
  try {
    return peerIdFromString(text).toString() === text
  } catch {
    return false
  }
}

/** The `dial=` of a fragment (`#dial=X&token=Y`), and the fragment without it. */
export function splitDial (hash: string): { request: DialRequest, rest: string } {
  const parts = hash.replace(/^#/, '').split('&').filter((p) => p !== '')
  const at = parts.findIndex((p) => p === 'dial' || p.startsWith('dial='))
  if (at === -1) return { request: { kind: 'none' }, rest: hash }
  let value = (parts[at] ?? '').slice('dial='.length)
  try {
    value = decodeURIComponent(value)
  } catch {}
  const rest = parts.filter((_, i) => i !== at).join('&')
  return { request: isPeerId(value) ? { kind: 'peer', peerId: value } : { kind: 'invalid' }, rest }
}

/** Take `#dial=` from the address bar (it leaves it, as `#token=` does); what it asked. */
export function takeDial (): DialRequest {
  const { request, rest } = splitDial(location.hash)
  if (request.kind !== 'none') {
    const url = new URL(location.href)
    url.hash = rest
    history.replaceState(history.state, '', url.href.endsWith('#') ? url.href.slice(0, -1) : url.href)
  }
  return request
}

/** Draw `text` as a QR code on `canvas`, dark on light whatever the page's colours (scanners want that). */
export function drawQr (canvas: HTMLCanvasElement, text: string): void {
  const qr = encode(text, { ecc: 'M', border: 0 })
  const modules = qr.size + 2 * QR_QUIET_MODULES
  const scale = Math.max(QR_MODULE_MIN_PX, Math.min(QR_MODULE_MAX_PX, Math.floor(QR_TARGET_PX / modules)))
  canvas.width = modules * scale
  canvas.height = modules * scale
  const g = canvas.getContext('2d')
  if (g === null) return
  g.fillStyle = '#fff'
  g.fillRect(0, 0, canvas.width, canvas.height)
  g.fillStyle = '#000'
  qr.data.forEach((row, y) => row.forEach((dark, x) => {
    if (dark) g.fillRect((x + QR_QUIET_MODULES) * scale, (y + QR_QUIET_MODULES) * scale, scale, scale)
  }))
  canvas.dataset.text = text
}

/** The invite section, and a `#dial=` the page was opened with. */
export function setupInvite (ctx: PageContext, token: () => string | undefined, dial: DialRequest = takeDial()): void {
  const linkInput = byId<HTMLInputElement>('invite-link')
  const dialChoice = byId<HTMLInputElement>('invite-dial')
  const withToken = byId<HTMLInputElement>('invite-token')
  const status = byId('invite-status')

  /** Show the link chosen, and its QR code. */
  const render = (): void => {
    const hasToken = token() !== undefined
    byId('invite-token-choice').hidden = !hasToken
    byId('invite-token-warning').hidden = !hasToken || !withToken.checked
    const kind: InviteKind = dialChoice.checked && ctx.peer !== undefined ? 'dial' : 'page'
    const link = inviteLink(location.href, kind, ctx.peer?.peerId, hasToken && withToken.checked ? token() : undefined)
    if (linkInput.value === link) return
    linkInput.value = link
    drawQr(byId<HTMLCanvasElement>('invite-qr'), link)
    byId('invite-qr').setAttribute('aria-label', `QR code of ${link}`)
    status.textContent = ''
  }
  for (const input of document.querySelectorAll<HTMLInputElement>('#invite input[name="invite-kind"], #invite-token')) input.addEventListener('change', render)
  ctx.on('session', render)
  ctx.on('session:close', render)
  render()

  byId('invite-copy').addEventListener('click', () => { void copy(linkInput, status) })
  if (dial.kind !== 'none') followDial(ctx, dial)
}

/** Copy the link with the Clipboard API; where the page may not, select it for the person to copy. */
async function copy (input: HTMLInputElement, status: HTMLElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(input.value)
    status.textContent = 'Copied.'
    delete status.dataset.state
  } catch {
    input.focus()
    input.select()
    status.textContent = 'This browser did not let the page copy: the link is selected, copy it with Ctrl+C (⌘C).'
    status.dataset.state = 'failed'
  }
}

/**
 * Pick the peer a `#dial=` link names once it is online, and say what happens meanwhile. The
 * person's own pick comes first: once they pick another peer, the link stops waiting (a peer
 * coming online later never takes the pick, and so the chat, from under them).
 */
function followDial (ctx: PageContext, dial: Exclude<DialRequest, { kind: 'none' }>): void {
  const status = byId('dial-status')
  status.hidden = false
  if (dial.kind === 'invalid') {
    status.textContent = 'The link this page was opened with asked to dial something that is not a peer id: ignored.'
    status.dataset.state = 'failed'
    return
  }
  const { peerId } = dial
  status.textContent = `Waiting for ${ctx.nameOf(peerId)} to come online (from the link this page was opened with).`
  status.dataset.state = 'waiting'
  const offs: Array<() => void> = []
  const finish = (text: string, state: string): void => {
    for (const off of offs.splice(0)) off()
    status.textContent = text
    status.dataset.state = state
  }
  const tryPick = (): void => {
    const peer = ctx.peer
    if (peer === undefined || offs.length === 0) return
    if (peerId === peer.peerId) {
      finish('The link this page was opened with dials this page itself: nothing to pick.', 'failed')
    } else if (peer.peers().some((p) => p.peerId === peerId)) {
      finish(`Picked ${ctx.nameOf(peerId)} from the link this page was opened with.`, 'done')
      ctx.pick(peerId)
    }
  }
  offs.push(ctx.on('session', ({ peer }) => {
    offs.push(peer.on('peer:join', tryPick))
    tryPick()
  }))
  offs.push(ctx.on('picked', (picked) => {
    if (picked !== undefined && picked !== peerId) finish(`Not waiting for ${ctx.nameOf(peerId)} any more: you picked ${ctx.nameOf(picked)}.`, 'done')
  }))
  tryPick()
}
