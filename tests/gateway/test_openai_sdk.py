"""The official OpenAI Python SDK against a live gateway (real mTLS): the requests it sends every day are
accepted, streams parse, typed errors map onto its error classes, and it does not retry what cannot help."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from edgebox.pki.ca import DeviceCA
from tests.gateway.support import Box, GatewayFactory, StubUpstream, make_box

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def sdk(port: int, box: Box, ca: DeviceCA) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(verify=box.ssl_context(ca))
    return openai.AsyncOpenAI(
        base_url=f"https://127.0.0.1:{port}/v1",
        api_key="not-used-by-edgebox",
        http_client=http,
        max_retries=2,
    )


async def test_sdk_everyday_requests(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path, upstream: StubUpstream
) -> None:
    gw = await make_gateway()
    client = sdk(gw.port, make_box(pki, "box-sdk", boxes_dir), pki)
    async with client:
        done = await client.chat.completions.create(
            model="gpt-test",
            messages=[
                {"role": "developer", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            ],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="auto",
            response_format={"type": "json_object"},
            max_tokens=50,
            temperature=0.2,
        )
        assert done.choices[0].message.content == "Hello!" and done.usage is not None
        sent = upstream.requests[-1][1]
        assert sent["messages"][0] == {"role": "developer", "content": "You are terse."}
        assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["tool_choice"] == "auto"
        assert sent["response_format"] == {"type": "json_object"}

        # a tool round trip: the assistant's tool call and the tool's answer
        await client.chat.completions.create(
            model="gpt-test",
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
            ],
            tools=TOOLS,  # type: ignore[arg-type]
        )

        stream = await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        assert text == "Hello!" and usage is not None and usage.total_tokens > 0


async def test_sdk_errors_are_typed_and_not_retried_when_retrying_cannot_help(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path, upstream: StubUpstream
) -> None:
    gw = await make_gateway()
    client = sdk(gw.port, make_box(pki, "box-sdk2", boxes_dir), pki)
    async with client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="gpt-test",
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                    }
                ],
            )
        assert bad.value.code == "unsupported_content"
        upstream.mode = "echo_key_error"  # the upstream refuses: a 502 that a retry cannot fix
        before = len(upstream.requests)
        with pytest.raises(openai.InternalServerError) as err:
            await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}]
            )
        assert err.value.status_code == 502 and err.value.response.headers["x-should-retry"] == "false"
        assert len(upstream.requests) - before == 1  # not the SDK's default three attempts
