/** Page helpers for file offers: answer the page's file prompt (`web/files.ts`) as a person would. */
import type { Page } from 'playwright-core'

/**
 * Click `answer` (`accept`, `decline`, `saveas`) on the next file prompt of `page` (the one from
 * `peerId`, when given). Granting buttons ignore clicks for their first 700 ms, so it clicks until
 * the prompt goes; settles once it went.
 */
export async function answerFile (page: Page, answer: 'accept' | 'decline' | 'saveas', peerId?: string, timeoutMs = 30_000): Promise<void> {
  const card = page.locator(`#prompts .prompt[data-kind="file"]${peerId !== undefined ? `[data-peer="${peerId}"]` : ''}`).first()
  await card.waitFor({ timeout: timeoutMs })
  const id = await card.getAttribute('id')
  const deadline = Date.now() + timeoutMs
  while (await page.locator(`#${id ?? ''}`).count() > 0) {
    if (Date.now() > deadline) throw new Error(`the file prompt ${id ?? ''} did not take "${answer}" within ${timeoutMs} ms`)
    await page.locator(`#${id ?? ''} button[data-answer="${answer}"]`).click({ timeout: 5000 }).catch(() => {})
    await page.waitForTimeout(250)
  }
}
