"""A download streamed from a thread's iterator, stopped when the client goes away.

Starlette leaves a body iterator suspended when the client disconnects; a document's iterator
holds a query open in the tenant's database. `Download` closes it as the response ends, however
it ends (sent, refused by a gone client, cancelled), shielded from the cancellation, so the
work behind it stops at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Send


class Download(StreamingResponse):
    """`chunks` (read on a worker thread) sent as the body; `chunks.close()` and `done()` run when
    the response ends."""

    def __init__(self, chunks: Iterator[bytes], *, filename: str, media_type: str,
                 done: Callable[[], None] = lambda: None) -> None:
        self._chunks, self._done = chunks, done
        super().__init__(self._body(), media_type=media_type,
                         headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    async def _body(self) -> AsyncIterator[bytes]:
        while (chunk := await run_in_threadpool(next, self._chunks, None)) is not None:
            yield chunk

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                await run_in_threadpool(self._chunks.close)
                self._done()
