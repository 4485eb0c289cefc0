"""API surfaces: each translates its requests into the engine's canonical request and
the engine's answers back into its own shapes. Adding a surface is one module here plus
one route (server/routes.py); the engine does not change."""
