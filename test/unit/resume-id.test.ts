/** The CLI's resume id per key file: taken up after a crash by one process only. Real files, real pids. */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { resumeIdFor } from '../../cli/resume-id.ts'

describe('resumeIdFor', () => {
  let dir: string
  let key: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'starsock-resume-id-'))
    key = join(dir, 'key')
  })
  afterEach(() => { rmSync(dir, { recursive: true, force: true }) })

  const deadPid = (): number => {
    const r = spawnSync(process.execPath, ['-e', ''])
    return r.pid
  }
  const ID = 'ab'.repeat(32)

  it('makes a fresh id and records it with this pid (mode 0600)', () => {
    const id = resumeIdFor(key)
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    expect(readFileSync(`${key}.resume`, 'utf8')).toBe(`${process.pid} ${id}\n`)
    expect(statSync(`${key}.resume`).mode & 0o777).toBe(0o600)
    expect(resumeIdFor(key)).not.toBe(id) // its own record is no predecessor's
  })

  it('takes up the id of a dead process, once: a second taker gets a fresh one', () => {
    writeFileSync(`${key}.resume`, `${deadPid()} ${ID}\n`)
    const record = readFileSync(`${key}.resume`, 'utf8')
    expect(resumeIdFor(key)).toBe(ID)
    writeFileSync(`${key}.resume`, record) // as a second process that read it before the first wrote
    expect(resumeIdFor(key)).not.toBe(ID)
  })

  it('beside a live process: a fresh id, and the record stays the live one\'s unless taking over', () => {
    writeFileSync(`${key}.resume`, `${process.ppid} ${ID}\n`)
    expect(resumeIdFor(key)).not.toBe(ID)
    expect(readFileSync(`${key}.resume`, 'utf8')).toBe(`${process.ppid} ${ID}\n`)
    const mine = resumeIdFor(key, true)
    expect(mine).not.toBe(ID)
    expect(readFileSync(`${key}.resume`, 'utf8')).toBe(`${process.pid} ${mine}\n`)
  })

  it('a record it cannot read gives a fresh id', () => {
    writeFileSync(`${key}.resume`, 'garbage')
    expect(resumeIdFor(key)).toMatch(/^[0-9a-f]{64}$/)
  })
})
