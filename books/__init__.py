"""Exchange-independent L2 order books: the book itself (:mod:`books.book`) and one sync state machine per
exchange (:mod:`books.binance`, :mod:`books.coinbase`, :mod:`books.kraken`) that keeps it in step with the feed and
says when it is not (docs/BOOKS.md)."""
