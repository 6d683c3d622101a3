/**
 * The server's token, for a server started with `--token`: taken from the page's address
 * (`#token=`, which the browser never sends to the server, or `?token=`, which it does), then
 * removed from the address bar (and so from history and bookmarks), and kept for this tab only
 * (session storage), so a reload joins again; or typed into the field the page shows when the
 * server refuses it for lack of a token.
 */
import { StarsockError } from '../shared/errors.ts'
import { byId } from './dom.ts'

/** Where this tab keeps the token: one per server, and two servers may share an origin under two prefixes. */
function storageKey (): string {
  return `starsock:token:${new URL('.', location.href).pathname}`
}

/**
 * The first `token=` of `a=1&token=x&b=2` (decoded with `decodeURIComponent`: a `+` stays a `+`,
 * as a base64 token has them; `URLSearchParams` would make it a space), and the rest.
 */
export function takeTokenParam (list: string): { found: boolean, token: string, rest: string } {
  const parts = list === '' ? [] : list.split('&')
  const at = parts.findIndex((p) => p === 'token' || p.startsWith('token='))
  if (at === -1) return { found: false, token: '', rest: list }
  const raw = (parts[at] ?? '').slice('token='.length)
  let token: string
  try {
    token = decodeURIComponent(raw)
  } catch {
    token = raw // a stray `%`: the token as typed
  }
  return { found: true, token, rest: parts.filter((_, i) => i !== at).join('&') }
}

/** The token in `href` (`#token=` before `?token=`) and `href` without it. */
export function splitToken (href: string): { token: string | undefined, href: string } {
  const url = new URL(href)
  const hash = takeTokenParam(url.hash.slice(1))
  const query = takeTokenParam(url.search.slice(1))
  if (!hash.found && !query.found) return { token: undefined, href }
  const token = hash.found ? hash.token : query.token
  if (query.found) url.search = query.rest
  url.hash = hash.rest
  return { token: token === '' ? undefined : token, href: url.href }
}

function remember (token: string | undefined): void {
  try {
    if (token === undefined) sessionStorage.removeItem(storageKey())
    else sessionStorage.setItem(storageKey(), token)
  } catch {}
}

/** The token to join with: from the address (which then loses it), else the one this tab kept. */
export function takeToken (): string | undefined {
  const { token, href } = splitToken(location.href)
  if (href !== location.href) {
    history.replaceState(history.state, '', href)
    remember(token)
    return token
  }
  try {
    return sessionStorage.getItem(storageKey()) ?? undefined
  } catch {
    return undefined
  }
}

/** Whether `err` is the server refusing the join for a missing or wrong token. */
export function isTokenRefusal (err: unknown): boolean {
  // E_FORBIDDEN is also the allowlist's refusal ("Peer id not allowed"): the token's names it.
  return err instanceof StarsockError && err.code === 'E_FORBIDDEN' && /token/i.test(err.message)
}

/**
 * Show the token field, saying whether a token was given (and refused) or is missing; settles
 * with the token the person enters (kept for this tab).
 */
export async function askForToken (given: string | undefined): Promise<string> {
  const form = byId<HTMLFormElement>('token-form')
  const input = byId<HTMLInputElement>('token-input')
  byId('token-text').textContent = given === undefined
    ? 'This server needs a token. Ask whoever runs it, and enter it here (or open this page as …/#token=<token>).'
    : 'This server refused the token this page has. Check it with whoever runs the server, and enter it again.'
  // A token refused is an error (styled as one); a token missing is a question.
  if (given === undefined) delete form.dataset.state
  else form.dataset.state = 'failed'
  form.hidden = false
  input.value = ''
  // The field takes the focus only from nowhere: a refusal on a reconnect while the person types a
  // message must not send the rest of their words to the server as a token.
  if (document.activeElement === null || document.activeElement === document.body) input.focus()
  const done = new AbortController()
  return await new Promise<string>((resolve) => {
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      const token = input.value.trim()
      if (token === '') return
      done.abort()
      // Not left in the page's DOM once used: the tab keeps it in session storage only.
      input.value = ''
      form.hidden = true
      delete form.dataset.state
      remember(token)
      resolve(token)
    }, { signal: done.signal })
  })
}
