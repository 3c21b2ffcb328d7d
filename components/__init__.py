"""The Gradio layer: one module per tab, the live gauges, and the one guard for every handler."""
