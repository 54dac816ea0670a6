/**
 * Following one operation's events: stream them, resume after a drop, or poll JSON pages.
 */
import { EnvpackClient } from './api';
import { IOperationEvent } from './tokens';

/**
 * How many event streams may be open at once, shared by every followed operation.
 *
 * Browsers allow about six HTTP/1.1 connections per host and JupyterLab needs some of them: past
 * the budget, operations are followed by polling event pages instead.
 */
export class StreamBudget {
  constructor(readonly max: number) {}

  tryAcquire(): boolean {
    if (this._open >= this.max) {
      return false;
    }
    this._open++;
    return true;
  }

  release(): void {
    this._open = Math.max(0, this._open - 1);
  }

  private _open = 0;
}

export interface IFollowOptions {
  client: EnvpackClient;
  id: string;
  signal: AbortSignal;
  budget: StreamBudget;
  onEvent: (event: IOperationEvent) => void;
  /**
   * Ask the server whether the operation is finished (called after each stream or poll).
   */
  settled: () => Promise<boolean>;
  /**
   * First delay before reconnecting a stream, in ms (doubles on failures, up to 10 s).
   */
  retryDelay: number;
  /**
   * Delay between two polls, in ms.
   */
  pollInterval: number;
}

/**
 * Deliver an operation's events until it is settled or `signal` aborts.
 */
export async function followOperation(options: IFollowOptions): Promise<void> {
  const { client, id, signal, budget } = options;
  // The resume point moves with every event received, so a stream that breaks in the middle
  // resumes after its last delivered event (no duplicated log lines).
  let after: string | null = null;
  const onEvent = (event: IOperationEvent): void => {
    if (event.id !== null) {
      after = event.id;
    }
    options.onEvent(event);
  };
  let failures = 0;
  while (!signal.aborted) {
    const streaming = budget.tryAcquire();
    try {
      if (streaming) {
        await client.streamEvents(id, onEvent, { lastEventId: after, signal });
      } else {
        await readPages(client, id, () => after, onEvent);
      }
      failures = 0;
    } catch (err) {
      if (signal.aborted) {
        return;
      }
      failures++;
    } finally {
      if (streaming) {
        budget.release();
      }
    }
    if (await options.settled()) {
      return;
    }
    const delay = streaming ? options.retryDelay : options.pollInterval;
    await sleep(Math.min(delay * 2 ** Math.min(failures, 4), 10000));
  }
}

/**
 * Read the JSON event pages of an operation until the server has no more.
 */
async function readPages(
  client: EnvpackClient,
  id: string,
  after: () => string | null,
  onEvent: (event: IOperationEvent) => void
): Promise<void> {
  for (;;) {
    const page = await client.eventsPage(id, after());
    page.events.forEach(onEvent);
    if (page.done || !page.events.length) {
      return;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}
