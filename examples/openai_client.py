"""The OpenAI Python client against `quill serve`: a completion, then a streamed one.

    pip install openai
    quill serve &            # http://127.0.0.1:8080
    python examples/openai_client.py [BASE_URL]
"""

import sys

from openai import OpenAI

base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v1"
# quill serve needs no key unless started with --api-key; the client insists on one.
client = OpenAI(base_url=base_url, api_key="sk-no-key-needed")

model = client.models.list().data[0].id
print(f"model: {model}")

c = client.completions.create(model=model, prompt="To be, or not to be", max_tokens=32, temperature=0.8, seed=1)
print(repr(c.choices[0].text), c.choices[0].finish_reason, c.usage)

print("streamed: ", end="")
for chunk in client.completions.create(
    model=model, prompt="HAMLET.\n", max_tokens=32, stream=True, stream_options={"include_usage": True}
):
    if chunk.choices:
        print(chunk.choices[0].text, end="", flush=True)
    if chunk.usage:
        print(f"\n{chunk.usage}")

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
except Exception as e:  # GPT-2 has no chat template: a 400 that says so
    print(f"chat: {type(e).__name__}: {e}")
