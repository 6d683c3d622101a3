import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Channel } from '../client/mux/channel.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import type { StarsockServer } from '../server/server.ts'
import { openInFirefox, type FirefoxPage } from './helpers/firefox.ts'
import { startServer, waitFor } from './helpers/server.ts'

describe('the page in Debian\'s Firefox', () => {
  let server: StarsockServer & { port: number }
  let node: StarsockPeer
  let agent: SockAgent
  let page: FirefoxPage | undefined
  let heard = ''

  beforeAll(async () => {
    server = await startServer()
    node = await createPeer({ server: server.url() })
    agent = createSockAgent(node, {
      onChannel: async (channel: Channel) => {
        void (async () => { for await (const chunk of channel) heard += new TextDecoder().decode(chunk) })().catch(() => {}) // ends with the connection
        return undefined
      }
    })
  })
  afterAll(async () => {
    await page?.close()
    await agent?.close()
    await node?.close()
    await server?.close()
  })

  it('joins, shows its peer id and the Node peer, and chats with it', async () => {
    page = await openInFirefox(server.url() + '/')
    const p = page
    let id = ''
    for (const deadline = Date.now() + 20_000; Date.now() < deadline;) {
      const state = await p.evaluate("document.getElementById('state').dataset.state")
      id = String(await p.evaluate("document.getElementById('my-id').textContent"))
      if (state === 'joined' && /^12D3KooW/.test(id)) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(id).toMatch(/^12D3KooW/)
    await waitFor('the Node peer to see the page', () => node.peers().some((x) => x.peerId === id), 10_000)
    // Over WebSocket, not left on long-polling: the CSP's connect-src 'self' lets Firefox open ws:// to its own host.
    const transports = (): string[] => Object.values((server.io.engine as unknown as { clients: Record<string, { transport: { name: string } }> }).clients).map((c) => c.transport.name)
    await waitFor(`both peers on websocket (now: ${transports().join(', ')})`, () => transports().length === 2 && transports().every((t) => t === 'websocket'), 10_000)
    for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
      if (await p.evaluate(`document.querySelector('#peer-list li[data-peer="${node.peerId}"]') !== null`) === true) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(await p.evaluate(`document.getElementById('peer-list').textContent`)).toContain(node.peerId)
    await p.evaluate(`document.querySelector('#peer-list li[data-peer="${node.peerId}"]').click(); document.getElementById('chat-text').value = 'hi from Firefox'; document.getElementById('chat-form').requestSubmit()`)
    await waitFor('the chat line from Firefox at the Node peer', () => heard.includes('{"text":"hi from Firefox"}'), 10_000)
  }, 60_000)
})
