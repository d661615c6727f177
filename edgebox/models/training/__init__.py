"""Training of the injection classifier (`edgebox models train`): needs the labelled data and
scikit-learn (a dev dependency); never imported at run time or by `edgebox models build`."""
