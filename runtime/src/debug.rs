//! Diagnostics: the registry of outstanding tickets (the 2012 review's debugfs idea).
