/**
 * A small incremental parser of `text/event-stream` (the WHATWG server-sent events format).
 *
 * `EventSource` cannot send the `Authorization` header, so the client reads the stream through
 * `ServerConnection.makeRequest` and parses it here.
 */

/**
 * One dispatched server-sent event.
 */
export interface IServerSentEvent {
  /**
   * The `event:` field (`message` when absent).
   */
  event: string;
  /**
   * The `data:` lines joined with newlines.
   */
  data: string;
  /**
   * The `id:` field of this event, or `null` when it had none.
   */
  id: string | null;
}

/**
 * Feed it chunks of text, get back the events they complete.
 */
export class SSEParser {
  /**
   * Parse a chunk; returns the events completed by it (a partial line waits for the next chunk).
   */
  feed(chunk: string): IServerSentEvent[] {
    this._buffer += chunk;
    const events: IServerSentEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this._buffer);
      // A lone trailing "\r" may be the first half of "\r\n": wait for more.
      if (
        !match ||
        (match[0] === '\r' && match.index === this._buffer.length - 1)
      ) {
        break;
      }
      const line = this._buffer.slice(0, match.index);
      this._buffer = this._buffer.slice(match.index + match[0].length);
      const event = this._line(line);
      if (event) {
        events.push(event);
      }
    }
    return events;
  }

  /**
   * Dispatch what is left when the stream ends (a last event without its blank line).
   */
  flush(): IServerSentEvent[] {
    const rest = this._buffer;
    this._buffer = '';
    const events = rest ? this.feed(rest + '\n') : [];
    const last = this._line('');
    return last ? [...events, last] : events;
  }

  private _line(line: string): IServerSentEvent | null {
    if (line === '') {
      return this._dispatch();
    }
    if (line.startsWith(':')) {
      return null;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this._event = value;
        break;
      case 'data':
        this._data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) {
          this._id = value;
        }
        break;
      default:
        // `retry` and unknown fields are ignored: the model has its own back-off.
        break;
    }
    return null;
  }

  private _dispatch(): IServerSentEvent | null {
    const hasData = this._data.length > 0;
    const event: IServerSentEvent = {
      event: this._event || 'message',
      data: this._data.join('\n'),
      id: this._id
    };
    this._event = '';
    this._data = [];
    this._id = null;
    return hasData ? event : null;
  }

  private _buffer = '';
  private _event = '';
  private _data: string[] = [];
  private _id: string | null = null;
}
