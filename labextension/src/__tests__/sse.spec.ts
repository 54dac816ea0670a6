import { SSEParser } from '../sse';

describe('SSEParser', () => {
  it('dispatches events split across chunks at any byte', () => {
    // Given a stream of two events cut in awkward places
    const text =
      'retry: 2000\n\nid: 1\nevent: progress\ndata: {"a":1}\n\nid: 2\ndata: x\n\n';
    const parser = new SSEParser();
    const events = [];
    // When it arrives one character at a time
    for (const ch of text) {
      events.push(...parser.feed(ch));
    }
    // Then both events come out whole, with their ids and types
    expect(events).toEqual([
      { event: 'progress', data: '{"a":1}', id: '1' },
      { event: 'message', data: 'x', id: '2' }
    ]);
  });

  it('handles CRLF, comments, multi-line data and a last event without blank line', () => {
    const parser = new SSEParser();
    const events = parser.feed(
      ': keep-alive\r\n\r\ndata: one\r\ndata: two\r\n\r\nevent: end\r'
    );
    events.push(...parser.feed('\ndata: {"state":"failed"}'));
    events.push(...parser.flush());
    expect(events).toEqual([
      { event: 'message', data: 'one\ntwo', id: null },
      { event: 'end', data: '{"state":"failed"}', id: null }
    ]);
  });

  it('ignores frames without data (retry-only, comments)', () => {
    const parser = new SSEParser();
    expect(parser.feed('retry: 10\n\n: comment\n\nevent: x\n\n')).toEqual([]);
  });
});
