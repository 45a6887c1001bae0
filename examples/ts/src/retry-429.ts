// Searches the tenant's documents; on 429 (rate limited or over budget) waits as long as retry-after
// asks, then tries again, a few times at most.
//   CRISPY_URL=http://localhost:8080 npx tsx src/retry-429.ts "refund policy"
import { createCrispyClient, retryAfterMs } from "@crispy-enigma/client";

const client = createCrispyClient({
  baseUrl: process.env.CRISPY_URL ?? "http://localhost:8080",
  tenant: process.env.CRISPY_TENANT ?? "demo",
  apiKey: process.env.CRISPY_API_KEY,
});
const query = process.argv.slice(2).join(" ") || "refund policy";

for (let attempt = 1; ; attempt++) {
  const { data, error, response } = await client.POST("/search", { body: { query } });
  if (data) {
    for (const s of data.sources) console.log(s.score.toFixed(3), s.title);
    break;
  }
  if (response.status === 429 && attempt < 4) {
    const wait = retryAfterMs(response) || 1000 * 2 ** (attempt - 1);
    console.error(`429 ${error?.code ?? ""}, retrying in ${wait} ms`);
    await new Promise((r) => setTimeout(r, wait));
    continue;
  }
  throw new Error(`${response.status}: ${error?.detail ?? ""}`);
}
