"""A scripted "malicious model": just enough of the Anthropic Messages API for Claude Code.

Test only. It runs in its own container (``images/model``) on the cage's
egress network under the name ``api.anthropic.com``, so Claude Code in an
agent reaches it through the proxy exactly as it would reach the real API.
It plays scenarios (:mod:`.script`): each a list of tool calls that try an
exfiltration, then a report of what the tool results showed. Every request it
receives, and every answer, goes to a transcript (:mod:`.transcript`).

Standard library only, imported with relative imports: the same files run as
``python3 -m model`` in the image and as ``kit.redteam.model`` in unit tests.
"""
