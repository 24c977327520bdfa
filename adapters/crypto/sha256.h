// SHA-256 over OpenSSL's EVP interface, for the clearing files' MANIFEST (SPEC section 6): an
// incremental form that implements the engine's Sha256Stream, so a detail file of any size is
// hashed as it is written, and a one-shot helper. A Sha256 is not thread-safe; each thread
// (each file) owns one.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/clearing/clearing_files.h"

namespace yrd {

class Sha256 final : public Sha256Stream {
 public:
  // Fails with ResourceExhausted when OpenSSL cannot allocate a digest context.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Sha256>> Create();
  ~Sha256() override;

  void Update(std::string_view bytes) override;
  // Lowercase hex of the digest of every byte updated so far; the stream is then spent.
  [[nodiscard]] std::string FinishHex() override;

 private:
  struct Impl;
  explicit Sha256(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// SHA-256 of `bytes`, 64 lowercase hex characters.
[[nodiscard]] std::string Sha256Hex(std::string_view bytes);

}  // namespace yrd
