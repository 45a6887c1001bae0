// The official OpenAI SDK against crispy's /v1 with a tenant key: a streamed answer, then a function
// call (tools) answered and sent back.
//   CRISPY_API_KEY=... npx tsx src/openai-sdk.ts
import OpenAI from "openai";

const openai = new OpenAI({
  baseURL: process.env.CRISPY_OPENAI_URL ?? "http://localhost:8080/v1",
  apiKey: process.env.CRISPY_API_KEY ?? "",
  maxRetries: 2, // the SDK honours retry-after on 429
});
const model = process.env.CRISPY_MODEL ?? "openai:gpt-4o-mini";

const stream = await openai.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Say hello in five words." }],
  stream: true,
});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
console.log();

const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The current weather of a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];
const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Lisbon?" }];
const first = await openai.chat.completions.create({ model, messages, tools });
const msg = first.choices[0].message;
if (!msg.tool_calls?.length) {
  console.log(msg.content);
} else {
  messages.push(msg);
  for (const call of msg.tool_calls) {
    if (call.type !== "function") continue;
    const { city } = JSON.parse(call.function.arguments) as { city: string };
    messages.push({ role: "tool", tool_call_id: call.id, content: JSON.stringify({ city, celsius: 21 }) });
  }
  const second = await openai.chat.completions.create({ model, messages, tools });
  console.log(second.choices[0].message.content);
}
