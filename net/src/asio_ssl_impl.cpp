// Boost.Asio's SSL implementation, compiled once like the rest of Asio: with
// BOOST_ASIO_SEPARATE_COMPILATION the headers leave it out (beast_asio_impl.cpp has the
// rest; this one is apart so that what does not use TLS does not pull it in).
#include <boost/asio/ssl/impl/src.hpp>
