/** Small DOM and formatting helpers for the page. */

/** The element with `id`; throws when the page lacks it (a programming mistake). */
export function byId<T extends HTMLElement = HTMLElement> (id: string): T {
  const node = document.getElementById(id)
  if (node === null) throw new TypeError(`the page has no #${id}`)
  return node as T
}

/** A new element with text and attributes. */
export function el<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v)
  if (text !== undefined) node.textContent = text
  return node
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB']

/**
 * `text` from another peer made inert for display: control and line separator characters (a tab
 * aside) and the bidi embeddings, overrides and isolates become U+FFFD, so it cannot reorder what
 * is shown around it (`gnp.exe` as `exe.png`). The directional marks (LRM, RLM, ALM), which
 * right-to-left writing needs and which reorder nothing by themselves, stay.
 */
export function inert (text: string): string {
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '\uFFFD')
}

/** `12.3 MiB`. */
export function formatBytes (bytes: number): string {
  let n = bytes
  let unit = 0
  while (n >= 1024 && unit < UNITS.length - 1) {
    n /= 1024
    unit++
  }
  return `${unit === 0 ? Math.round(n) : n.toFixed(1)} ${UNITS[unit] ?? 'B'}`
}

/** `1 min 5 s`, `3 s`. */
export function formatSeconds (seconds: number): string {
  if (!Number.isFinite(seconds)) return '…'
  const s = Math.max(0, Math.round(seconds))
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`
}

/** Lower-case hex of bytes. */
export function hex (bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** A peer id short enough to read and compare: `12D3…k3Xq9a` (the first four and last six characters). */
export function shortId (peerId: string): string {
  return peerId.length <= 12 ? peerId : `${peerId.slice(0, 4)}…${peerId.slice(-6)}`
}

/**
 * Milliseconds from the URL parameter `name` of `search`, given in whole seconds within `range`
 * (`?ask-timeout=20`); undefined without one, or out of range (the caller's default then holds).
 */
export function secondsParam (search: string, name: string, range: readonly [number, number]): number | undefined {
  const raw = new URLSearchParams(search).get(name)
  if (raw === null || !/^\d{1,4}$/.test(raw)) return undefined
  const s = Number(raw)
  return s >= range[0] && s <= range[1] ? s * 1000 : undefined
}
