import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { connectSocket, dialAndEcho, echoIncoming, joinWithChallenge, makeIdentity, receiveStream, request, startRawPeer, StreamSink } from './helpers/raw-peer.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'

const ORIGINAL_METRICS = [
  'rendezvous_peers', 'rendezvous_joins_total', 'rendezvous_joins_total_success', 'rendezvous_joins_total_failure',
  'rendezvous_dials_total', 'rendezvous_dials_total_success', 'rendezvous_dials_total_failure'
]
const OUR_METRICS = ['starsock_sockets', 'starsock_streams', 'starsock_relayed_bytes_total', 'starsock_buffered_bytes', 'starsock_limit_hits_total', 'starsock_ws_peer_messages_total']

describe('operations', () => {
  it('serves /healthz, /readyz, /metrics with the original names plus ours, and the page', async () => {
    const server = await startServer()
    try {
      const a = await startRawPeer(server.url(), server.port)
      const b = await startRawPeer(server.url(), server.port)
      echoIncoming(b)
      await within('an echo of 5000 bytes', dialAndEcho(a, b.addr, testBytes(5000)))
      expect(await (await fetch(`${server.url()}/healthz`)).text()).toBe('ok\n')
      expect((await fetch(`${server.url()}/readyz`)).status).toBe(200)
      const metrics = await (await fetch(`${server.url()}/metrics`)).text()
      for (const name of [...ORIGINAL_METRICS, ...OUR_METRICS]) expect(metrics).toContain(`# TYPE ${name} `)
      expect(metrics).toMatch(/^rendezvous_peers 2$/m)
      expect(metrics).toMatch(/^rendezvous_joins_total_success 2$/m)
      expect(metrics).toMatch(/^rendezvous_dials_total_success 1$/m)
      expect(metrics).toMatch(/^starsock_relayed_bytes_total 10000$/m)
      const page = await fetch(`${server.url()}/`)
      expect(page.headers.get('content-type')).toContain('text/html')
      expect(await page.text()).toContain('starsock')
      expect((await fetch(`${server.url()}/nope`)).status).toBe(404)
      const status = await (await fetch(`${server.url()}/status.json`)).json() as Record<string, unknown>
      expect(status).toMatchObject({ peers: 2, relayedBytes: 10000 })
      expect(await (await fetch(`${server.url()}/status`)).text()).toMatch(/<th scope="row">relayedBytes<\/th><td>10000<\/td>/)
      // The static page never serves a file outside its folder.
      for (const path of ['/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/assets/..%2f..%2f..%2fpackage.json']) {
        expect((await fetch(`${server.url()}${path}`)).status).toBe(404)
      }
      a.close()
      b.close()
    } finally {
      await server.close()
    }
  })

  it('turns /metrics off', async () => {
    const server = await startServer({ metrics: false })
    try {
      expect((await fetch(`${server.url()}/metrics`)).status).toBe(404)
    } finally {
      await server.close()
    }
  })

  it('shuts down gracefully: not ready, open streams get the grace, then fail', async () => {
    const server = await startServer({ shutdownGraceMs: 400 })
    const a = await startRawPeer(server.url(), server.port)
    const b = await startRawPeer(server.url(), server.port)
    let stream: Promise<Buffer> | undefined
    b.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
      stream = receiveStream(b.socket, `${dialId}.dialer`)
      stream.catch(() => {})
      ack()
    })
    const sink = new StreamSink(a.socket, 'g.dialer')
    expect(await request(a.socket, 'ss-dial', [a.addr, b.addr, 'g'])).toEqual([])
    await sink.send([testBytes(100)], false)
    const started = Date.now()
    const closing = server.close()
    expect(server.stats().streams).toBe(2)
    expect((await fetch(`${server.url()}/readyz`)).status).toBe(503)
    await expect(connectSocket(server.url())).rejects.toThrow('Server shutting down [E_SHUTDOWN]')
    await expect(within('shutdown error at B', stream ?? Promise.reject(new Error('no stream')), 3000)).rejects.toThrow('[E_SHUTDOWN]')
    await within('close to settle', closing, 3000)
    expect(Date.now() - started).toBeGreaterThanOrEqual(350)
    a.close()
    b.close()
  })

  describe('TLS', () => {
    const dir = mkdtempSync(join(tmpdir(), 'starsock-tls-'))
    afterAll(() => rmSync(dir, { recursive: true, force: true }))

    it('serves wss and https with a certificate made here', async () => {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
      const cert = readFileSync(join(dir, 'cert.pem'))
      const server = await startServer({ tls: { key: readFileSync(join(dir, 'key.pem')), cert } })
      try {
        expect(server.url()).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
        const body = await within('/healthz over https', new Promise<string>((resolve, reject) => {
          httpsRequest(`${server.url()}/healthz`, { ca: cert }, (res) => {
            let text = ''
            res.on('data', (d: Buffer) => { text += d.toString() })
            res.on('end', () => resolve(text))
          }).on('error', reject).end()
        }))
        expect(body).toBe('ok\n')
        const socket = await connectSocket(server.url(), { ca: cert })
        const me = await makeIdentity(server.port)
        await joinWithChallenge(socket, me.key, me.addr)
        expect(server.stats().peers).toBe(1)
        socket.close()
        await waitFor('the socket to go', () => server.stats().sockets === 0)
      } finally {
        await server.close()
      }
    })
  })
})
