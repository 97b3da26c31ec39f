"""asyncio support of ``quill.Request``: ``async for piece in request`` awaits each piece
without blocking the event loop (the engine runs on its own thread; this polls its queue,
backing off from 0.5 to 10 ms while nothing comes)."""
import asyncio


async def anext(request):
    delay = 0.0005
    while True:
        item = request.poll()
        if item is None:
            raise StopAsyncIteration
        if item is not Ellipsis:
            return item
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)
