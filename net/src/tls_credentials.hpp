// The certificate and key of the main port (server.tls_cert_file, server.tls_key_file;
// CONTRACT 16), loaded at start and again on SIGHUP. A new connection takes the current
// context; the connections made from an older one keep it (transport_stream.hpp), so a
// reload drops none. A reload that fails keeps the current context.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <mutex>
#include <string>

namespace wsvisor {

// A TLS 1.2+ server context from PEM files, or an error text that names the file, the
// key to fix (server.tls_cert_file / server.tls_key_file) and OpenSSL's reason.
struct tls_load_result {
  std::shared_ptr<boost::asio::ssl::context> context;
  std::string error;
};
tls_load_result load_tls_context(const std::string& cert_file, const std::string& key_file);

class tls_credentials {
 public:
  tls_credentials(std::string cert_file, std::string key_file)
      : cert_file_(std::move(cert_file)), key_file_(std::move(key_file)) {}

  // Whether TLS is configured at all (both files set).
  bool enabled() const { return !cert_file_.empty(); }

  // Reads both files again; on success new connections use them. "" or the error (the
  // current context, if any, stays).
  std::string reload();

  // The context for a new connection; null before the first successful load.
  std::shared_ptr<boost::asio::ssl::context> current() const;

  const std::string& cert_file() const { return cert_file_; }

 private:
  const std::string cert_file_;
  const std::string key_file_;
  mutable std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> current_;
};

}  // namespace wsvisor
