#include "tls_credentials.hpp"

#include <boost/asio/ssl/error.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace wsvisor {

namespace ssl = boost::asio::ssl;

namespace {

// OpenSSL's reason for the last failure ("no start line", "key values mismatch"), or
// the system's, cleared from OpenSSL's error queue so that it cannot leak into the next
// connection's error.
std::string openssl_reason(const boost::system::error_code& ec) {
  std::string reason;
  if (const unsigned long code = ERR_peek_last_error(); code != 0) {
    const char* text = ERR_reason_error_string(code);
    reason = text ? text : "OpenSSL error " + std::to_string(code);
  } else {
    reason = ec.message();
  }
  ERR_clear_error();
  return reason;
}

}  // namespace

tls_load_result load_tls_context(const std::string& cert_file, const std::string& key_file) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  // TLS 1.2 and 1.3 only (CONTRACT 16): 1.0 and 1.1 are deprecated by RFC 8996.
  if (SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION) != 1)
    return {nullptr, "cannot require TLS 1.2: " + openssl_reason(ec)};
  context->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                           ssl::context::single_dh_use,
                       ec);
  // A session cache per context is what a reload would have to carry over; tickets do
  // resumption without server state.
  SSL_CTX_set_session_cache_mode(context->native_handle(), SSL_SESS_CACHE_OFF);
  context->use_certificate_chain_file(cert_file, ec);
  if (ec)
    return {nullptr, "server.tls_cert_file: cannot use '" + cert_file + "' as a PEM certificate " +
                         "chain: " + openssl_reason(ec) +
                         " (give the path of a readable PEM file)"};
  const std::string mismatch = "server.tls_key_file: the key in '" + key_file +
                               "' does not belong to the certificate in '" + cert_file +
                               "' (give the key the certificate was made for)";
  context->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) {
    // OpenSSL compares the key with the certificate as it loads it.
    if (ec.category() == boost::asio::error::get_ssl_category() &&
        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return {nullptr, mismatch};
    }
    return {nullptr, "server.tls_key_file: cannot use '" + key_file +
                         "' as a PEM private key: " + openssl_reason(ec) +
                         " (give the path of a readable, unencrypted PEM key)"};
  }
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    ERR_clear_error();
    return {nullptr, mismatch};
  }
  return {std::move(context), ""};
}

std::string tls_credentials::reload() {
  auto loaded = load_tls_context(cert_file_, key_file_);
  if (!loaded.context) return loaded.error;
  std::lock_guard<std::mutex> lock(mutex_);
  current_ = std::move(loaded.context);
  return "";
}

std::shared_ptr<ssl::context> tls_credentials::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_;
}

}  // namespace wsvisor
