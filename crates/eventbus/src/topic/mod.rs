//! Topics, topic filters and the subscription index.
