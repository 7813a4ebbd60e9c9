// STUB for the syntax check of ../../GpumlInference.h only - not CMSSW's header.
#ifndef STUB_FWCore_Utilities_Exception_h
#define STUB_FWCore_Utilities_Exception_h
#include <exception>
#include <sstream>
#include <string>
namespace cms {
  class Exception : public std::exception {
  public:
    explicit Exception(std::string const& category) : category_(category) {}
    template <typename T>
    Exception& operator<<(T const& v) {
      std::ostringstream os;
      os << v;
      message_ += os.str();
      return *this;
    }
    const char* what() const noexcept override { return message_.c_str(); }
    std::string const& category() const { return category_; }

  private:
    std::string category_, message_;
  };
}  // namespace cms
#endif
