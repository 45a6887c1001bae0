// Drives the TypeScript client against a running crispy serve (test/e2e TestTSClientAgainstTheServer
// starts it): ingest, search, a tool, chat streamed and plain, history, and a 429 with retry-after.
//   node .build/test/e2e.js <baseURL> <demo key>
import { createCrispyClient, retryAfterMs, streamChat } from "../src/index.js";

const [baseUrl, apiKey] = process.argv.slice(2);
const fail = (msg: string): never => {
  console.error("ts e2e:", msg);
  process.exit(1);
};
const c = createCrispyClient({ baseUrl, tenant: "demo", apiKey });

const ing = await c.POST("/ingest", { body: { docId: "handbook", title: "Handbook", text: "Refunds are issued within 14 days of a return." } });
if (!ing.data) fail(`ingest: ${ing.response.status} ${JSON.stringify(ing.error)}`);

let found = false;
for (let i = 0; i < 50 && !found; i++) {
  const s = await c.POST("/search", { body: { query: "how long do refunds take", answer: false } });
  if (s.data) {
    found = s.data.sources.some((src) => src.docId === "handbook");
  } else if (s.response.status === 503) {
    await new Promise((r) => setTimeout(r, Math.min(retryAfterMs(s.response), 200) || 100));
  } else {
    fail(`search: ${s.response.status} ${JSON.stringify(s.error)}`);
  }
  if (!found) await new Promise((r) => setTimeout(r, 100));
}
if (!found) fail("search never found the ingested document");

const tool = await c.POST("/tools/execute", { body: { tool_name: "summarize", params: { text: "One sentence. Another one." } } });
if (!tool.data) fail(`tool: ${tool.response.status} ${JSON.stringify(tool.error)}`);

const sessionId = crypto.randomUUID();
let text = "";
let model = "";
for await (const ev of streamChat(c, { sessionId, message: "Stream me an answer" })) {
  if (ev.event === "token") text += ev.data.token;
  else if (ev.event === "done") model = ev.data.model;
  else if (ev.event === "error") fail(`stream error ${ev.data.code}`);
}
if (!text || !model) fail(`stream: text ${JSON.stringify(text)}, model ${model}`);

const plain = await c.POST("/chat", { body: { sessionId, message: "And now as JSON", stream: false } });
if (!plain.data || !("response" in plain.data) || !plain.data.response) fail(`plain chat: ${plain.response.status} ${JSON.stringify(plain.error)}`);

const hist = await c.GET("/chat/{sessionId}/history", { params: { path: { sessionId } } });
if (!hist.data || hist.data.messages.length !== 4 || hist.data.messages[0].content !== "Stream me an answer") {
  fail(`history: ${JSON.stringify(hist.data ?? hist.error)}`);
}

// The tenant "tiny" allows one request a minute: the second is a 429 that says when to come back.
const tiny = createCrispyClient({ baseUrl, tenant: "tiny" });
let limited = false;
for (let i = 0; i < 5 && !limited; i++) {
  const r = await tiny.GET("/sessions", {});
  if (r.response.status === 429) {
    limited = true;
    if (retryAfterMs(r.response) <= 0 || !r.error?.code) fail(`429 without retry-after or code: ${JSON.stringify(r.error)}`);
  }
}
if (!limited) fail("no 429 from a tenant allowed one request a minute");
console.log("ts e2e: ok");
