// Streams one chat answer and prints its tokens as they arrive.
//   CRISPY_URL=http://localhost:8080 CRISPY_TENANT=demo npx tsx src/stream-chat.ts "What does our refund policy say?"
import { createCrispyClient, streamChat } from "@crispy-enigma/client";

const client = createCrispyClient({
  baseUrl: process.env.CRISPY_URL ?? "http://localhost:8080",
  tenant: process.env.CRISPY_TENANT ?? "demo",
  apiKey: process.env.CRISPY_API_KEY,
});

const message = process.argv.slice(2).join(" ") || "Hello!";
for await (const ev of streamChat(client, { sessionId: crypto.randomUUID(), message })) {
  switch (ev.event) {
    case "token":
      process.stdout.write(ev.data.token);
      break;
    case "citation":
      console.error(`[source: ${ev.data.title}]`);
      break;
    case "done":
      console.log(`\n(${ev.data.model}, ${ev.data.usage.totalTokens} tokens)`);
      break;
    case "error":
      throw new Error(`${ev.data.code}: ${ev.data.message}`);
  }
}
