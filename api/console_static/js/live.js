// Following a job as it runs: its event stream, else the long poll.

import { ApiError, events, get } from "./api.js";
import { config } from "./config.js";

const RECONNECT_MS = 1000;
const LONG_POLL_S = 20;

/**
 * Call onJob with each new state of the job and onText with each piece of decoded text, until it
 * ends; return the finished job (null if `signal` aborted first).
 */
export async function follow(jobId, { onJob, onText = () => {}, signal }) {
  let lastEventId = null;
  while (!signal.aborted) {
    try {
      for await (const message of events(`/v1/jobs/${jobId}/events`, { signal, lastEventId })) {
        lastEventId = message.id || lastEventId;
        const data = JSON.parse(message.data);
        if (message.event === "text") onText(data.text);
        else onJob(data);
        if (message.event === "result") return data;
      }
      // The server ended the stream early (its time limit, a slow read): resume where it was.
      await pause(RECONNECT_MS, signal);
    } catch (error) {
      if (signal.aborted) return null;
      if (error instanceof ApiError && error.status < 500) throw error;
      return longPoll(jobId, onJob, signal); // no stream here (a proxy that buffers, an outage)
    }
  }
  return null;
}

async function longPoll(jobId, onJob, signal) {
  const { terminal_statuses: terminal } = await config();
  while (!signal.aborted) {
    try {
      const job = await get(`/v1/jobs/${jobId}?wait_s=${LONG_POLL_S}`, { signal });
      onJob(job);
      if (terminal.includes(job.status)) return job;
    } catch (error) {
      if (signal.aborted) return null;
      if (error instanceof ApiError && error.status < 500) throw error;
      await pause(RECONNECT_MS * 5, signal);
    }
  }
  return null;
}

/** Resolve after `ms`, or at once when `signal` aborts. */
export function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/** Call `fn` now and then every `ms` until `signal` aborts; its errors go to `onError`. */
export async function every(ms, signal, fn, onError) {
  while (!signal.aborted) {
    try {
      await fn();
    } catch (error) {
      if (signal.aborted) return;
      onError(error);
    }
    await pause(ms, signal);
  }
}
