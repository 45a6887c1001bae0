// The Crispy Enigma API client: openapi-fetch over the types openapi-typescript generates from
// openapi/openapi.yaml (schema.gen.ts, never edited by hand), plus what a generated client cannot do
// by itself: read the chat's server-sent events as typed events, and say how long a 429 asks to wait.
import createClient, { type Client, type ClientOptions } from "openapi-fetch";
import type { components, paths } from "./schema.gen.js";

export type { components, paths } from "./schema.gen.js";
export type Schemas = components["schemas"];
/** One event of a chat turn: token, tool, citation, done or error, discriminated by `event`. */
export type ChatEvent = Schemas["ChatEvent"];
export type Problem = Schemas["Problem"];
export type CrispyClient = Client<paths>;

export interface CrispyOptions extends ClientOptions {
  /** The server's base URL, e.g. http://localhost:8080 */
  baseUrl: string;
  /** The tenant's API key, sent as Authorization: Bearer. */
  apiKey?: string;
  /** The tenant, sent as x-tenant-id (otherwise the key or the Host selects it). */
  tenant?: string;
}

/** A typed client of every operation of the API. */
export function createCrispyClient(opts: CrispyOptions): CrispyClient {
  const { apiKey, tenant, headers, ...rest } = opts;
  const h = new Headers(headers as HeadersInit | undefined);
  if (apiKey) h.set("authorization", `Bearer ${apiKey}`);
  if (tenant) h.set("x-tenant-id", tenant);
  return createClient<paths>({ ...rest, headers: Object.fromEntries(h.entries()) });
}

/** One server-sent event as it came. */
export interface RawEvent {
  id?: string;
  event: string;
  data: string;
}

/** Reads the server-sent events of a response body, one at a time. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<RawEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let ev: Partial<RawEvent> = {};
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (line === "") {
          if (data.length > 0 || ev.event !== undefined) {
            yield { id: ev.id, event: ev.event ?? "message", data: data.join("\n") };
          }
          ev = {};
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment (keep-alive)
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "id") ev.id = val;
        else if (field === "event") ev.event = val;
        else if (field === "data") data.push(val);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** Reads a chat stream's events, typed: narrow on `event` ("token", "done", …). */
export async function* chatEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ChatEvent> {
  for await (const raw of readEvents(body)) {
    const ev = { event: raw.event, data: JSON.parse(raw.data) } as ChatEvent;
    if (raw.id !== undefined) ev.id = Number(raw.id);
    yield ev;
  }
}

/** A refusal of the API: the status, the problem document and, for 429/503, the wait it asks for. */
export class CrispyError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
    readonly retryAfterMs: number,
  ) {
    super(`crispy: ${status} ${problem?.code ?? ""}: ${problem?.detail ?? ""}`);
  }
}

/** The wait a retry-after header asks for, in milliseconds (seconds or an HTTP date); 0 without one. */
export function retryAfterMs(res: Response): number {
  const v = res.headers.get("retry-after")?.trim();
  if (!v) return 0;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? 0 : Math.max(0, t - Date.now());
}

export type ChatInput = Schemas["SendChatMessageInput"];

/**
 * Sends a chat message and yields its answer as typed events, until done or error. A refusal
 * (401, 404, 429 …) throws a CrispyError before any event.
 */
export async function* streamChat(client: CrispyClient, body: ChatInput, signal?: AbortSignal): AsyncGenerator<ChatEvent> {
  const { response, error } = await client.POST("/chat", {
    body: { ...body, stream: true },
    headers: { accept: "text/event-stream" },
    parseAs: "stream",
    signal,
  });
  if (error !== undefined || !response.ok || !response.body) {
    let problem: Problem | undefined;
    try {
      problem = (error as Problem | undefined) ?? ((await response.json()) as Problem);
    } catch {
      problem = undefined;
    }
    throw new CrispyError(response.status, problem, retryAfterMs(response));
  }
  yield* chatEvents(response.body);
}
