"""The tier ladder (Regular -> Silver -> Gold -> Diamond by default) and its pure rules."""
