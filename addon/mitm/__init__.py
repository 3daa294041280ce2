"""The mitmproxy side of the addon: small addon classes that turn pure decisions into responses.

Everything that decides lives in the pure modules one level up; these classes
read mitmproxy objects, call them, and apply the result.
"""
