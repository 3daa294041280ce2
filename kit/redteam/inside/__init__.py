"""The half of the red team that runs inside an agent.

Standard library only, Python >= 3.11: these modules (and
``kit.redteam.encodings``) are sent into the agent through ``Backend.exec``
and run by the agent's own ``python3``, so the attack needs nothing the agent
image does not already have. :mod:`kit.redteam.shipping` packs them.
"""
