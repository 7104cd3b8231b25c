// OpenCV's GUI functions that gocv's highgui.cpp calls, replaced by stops:
// see headless.go. Qualified definitions (cv::name) must match a
// declaration in opencv2/highgui.hpp, so the compiler checks each one.
#include <cstdio>
#include <cstdlib>
#include <opencv2/core.hpp>
#include <opencv2/highgui.hpp>

namespace {
[[noreturn]] void headless(const char *fn) {
	std::fprintf(stderr, "yedge: cv::%s: yedge is built without OpenCV's GUI module (internal/headless)\n", fn);
	std::abort();
}
} // namespace

void cv::namedWindow(const String &, int) { headless("namedWindow"); }
void cv::destroyWindow(const String &) { headless("destroyWindow"); }
void cv::imshow(const String &, InputArray) { headless("imshow"); }
int cv::waitKey(int) { headless("waitKey"); }
void cv::moveWindow(const String &, int, int) { headless("moveWindow"); }
void cv::resizeWindow(const String &, int, int) { headless("resizeWindow"); }
void cv::setWindowProperty(const String &, int, double) { headless("setWindowProperty"); }
double cv::getWindowProperty(const String &, int) { headless("getWindowProperty"); }
void cv::setWindowTitle(const String &, const String &) { headless("setWindowTitle"); }
cv::Rect cv::selectROI(const String &, InputArray, bool, bool) { headless("selectROI"); }
void cv::selectROIs(const String &, InputArray, std::vector<Rect> &, bool, bool) { headless("selectROIs"); }
int cv::createTrackbar(const String &, const String &, int *, int, TrackbarCallback, void *) { headless("createTrackbar"); }
int cv::getTrackbarPos(const String &, const String &) { headless("getTrackbarPos"); }
void cv::setTrackbarPos(const String &, const String &, int) { headless("setTrackbarPos"); }
void cv::setTrackbarMax(const String &, const String &, int) { headless("setTrackbarMax"); }
void cv::setTrackbarMin(const String &, const String &, int) { headless("setTrackbarMin"); }
