"""Where rows come from: the source contract every kind of source implements, and its families."""
